"""Hostile files, case by case: links, FIFOs, devices, sparse files, copied seeds, forged ONNX,
NaN payloads, inconsistent last.pt, capped grids, long and hostile names.

Each failing case asserts the exit code, one error line, no traceback, that the command gave up
in seconds, and that nothing under the test's folder changed; a private file outside the models
folder (`outside/secret.txt`, mode 0600) must keep its bytes and mode in every case.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from regcli.core import files
from regcli.core.files import readme_markers
from regcli.inference.backends import CONTENT_KEY, content_sha256
from tests.conftest import (
    DATA_DIR,
    RESUME_OPTIONS,
    TINY,
    copy_model,
    deadline,
    edit_checkpoint,
    fails_cleanly,
    invoke,
    no_traceback,
    one_line_error,
    places,
    relabel,
    resume,
    tree,
)

START, END = readme_markers("results-table", "regcli report")
PATH_START, PATH_END = readme_markers("path-table", "regcli report")
SECRET = b"private\n"


def private(root: Path) -> Path:
    """A private file outside every models folder."""
    secret = root / "outside" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return secret


def untouched(secret: Path) -> None:
    info = os.lstat(secret)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert secret.read_bytes() == SECRET


def refused(args: list, code: int, fragments: list[str], root: Path, seconds: int = 20) -> str:
    """Run a command that must fail cleanly, fast, changing nothing under root."""
    before = tree(root)
    with deadline(seconds, "a hostile file must be refused at once, not read or waited on"):
        result = invoke(*args)
    return fails_cleanly(result, code, fragments, before, root)


def readme(root: Path, text: str = f"# study\n\n{START}\nold\n{END}\n\nhand-written\n") -> Path:
    path = root / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def report_args(model: Path, root: Path, target: Path) -> list:
    return ["report", model, "--data-dir", DATA_DIR, "--images-dir", root / "images", "--readme",
            target]  # fmt: skip


# --- 1. nothing is written through a link, nothing outside --models-dir ------------------------


@pytest.mark.parametrize("name", [".lock", "model.onnx"])
def test_a_link_in_a_model_folder_is_never_written_through(name, exported, tmp_path):
    secret = private(tmp_path)
    model = copy_model(exported, tmp_path / "models")
    (model / name).unlink(missing_ok=True)
    (model / name).symlink_to(secret)
    refused(["export", model, "--force", "--data-dir", DATA_DIR], 1, ["symbolic link"], tmp_path)
    untouched(secret)


def test_a_seed_folder_that_is_a_link_is_no_member_and_is_never_written(tiny_group, tmp_path):
    secret = private(tmp_path)
    elsewhere = tmp_path / "outside" / "seed-1"
    shutil.copytree(tiny_group / "seed-1", elsewhere)
    group = tmp_path / "models" / "grp"
    shutil.copytree(tiny_group / "seed-0", group / "seed-0")
    (group / "seed-1").symlink_to(elsewhere)
    outside = tree(tmp_path / "outside")
    result = invoke("export", group, "--force", "--data-dir", DATA_DIR, "--json")
    assert result.exit_code == 0, result.output
    assert [Path(r["model"]).name for r in json.loads(result.stdout)] == ["seed-0"]
    assert tree(tmp_path / "outside") == outside
    args = ["export", group / "seed-1", "--force", "--data-dir", DATA_DIR]
    refused(args, 1, ["symbolic link", "real folders"], tmp_path)
    untouched(secret)


def test_a_readme_that_is_a_link_is_refused_and_a_private_readme_keeps_its_mode(
    quick_model, tmp_path
):
    secret = private(tmp_path)
    secret.write_text(f"{START}\nold\n{END}\n")
    secret.chmod(0o600)
    model = copy_model(quick_model, tmp_path / "models")
    link = tmp_path / "README.md"
    link.symlink_to(secret)
    refused(report_args(model, tmp_path, link), 1, ["symbolic link", str(link)], tmp_path)
    assert os.path.islink(link) and secret.read_text() == f"{START}\nold\n{END}\n"
    own = readme(tmp_path / "own")
    own.chmod(0o600)
    result = invoke(*report_args(model, tmp_path, own))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(own.stat().st_mode) == 0o600 and "hand-written" in own.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "--report", "--name", "../elsewhere/sweep"],
        ["sweep", "--name", "a/b", "--dry-run"],
        ["sweep", "--name", "x" * 65, "--dry-run"],
        ["train", "--name", "x" * 240, *TINY],
    ],
    ids=["sweep-report-outside", "sweep-nested", "sweep-long", "train-long"],
)
def test_one_name_check_for_every_command(args, tmp_path):
    private(tmp_path)
    refused([*args, *places(tmp_path)], 2, ["--name"], tmp_path)


def test_a_killed_writers_temporary_file_is_cleaned_by_the_next_write(tmp_path):
    target = tmp_path / "results.csv"
    dead = dead_pid()
    left = tmp_path / f".results.csv.{dead}.k1l2d.tmp"  # what a SIGKILL leaves
    live = tmp_path / f".results.csv.{os.getpid()}.m3n4o.tmp"  # a writer still at work
    left.write_text("half")
    live.write_text("busy")
    files.write_bytes(target, b"done\n")
    assert target.read_bytes() == b"done\n" and not left.exists() and live.exists()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# --- 2. the README's own text is never destroyed -------------------------------------------------


def test_interleaved_markers_are_refused_before_any_work(quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    text = f"{START}\nold\n{PATH_START}\nmine\n{END}\nhand-written\n{PATH_END}\n"
    refused(report_args(model, tmp_path, readme(tmp_path, text)), 1, ["out of order"], tmp_path)


def test_another_sections_unclosed_marker_is_refused_before_any_work(quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    text = f"{START}\nold\n{END}\n<!-- mine:start -->\nhand-written, and no end\n"
    args = report_args(model, tmp_path, readme(tmp_path, text))
    refused(args, 1, ["mine", "no end marker"], tmp_path)


def test_a_readme_that_cannot_be_written_costs_no_figure(quick_model, tmp_path, monkeypatch):
    model = copy_model(quick_model, tmp_path / "models")
    target = readme(tmp_path)
    target.chmod(0o444)
    if os.geteuid() == 0:  # root may write anything: answer as the file's mode says
        real = files.can_write
        monkeypatch.setattr(files, "can_write", lambda p: p != target and real(p))
    refused(report_args(model, tmp_path, target), 1, ["permission denied", str(target)], tmp_path)


# --- 3. every read is bounded; FIFOs and devices are refused ------------------------------------


def sparse(path: Path, size: int = 8 * 2**30) -> None:
    """An 8 GB file that costs no disk."""
    path.unlink(missing_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("device", ["/dev/zero", "fifo"])
def test_a_config_that_is_a_device_or_fifo_is_refused(command, device, tmp_path):
    if device == "fifo":
        os.mkfifo(tmp_path / "fifo")
        device = tmp_path / "fifo"
    refused([command, "--config", device, *places(tmp_path)], 2, ["not a regular file"], tmp_path)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "sparse-8gb"])
def test_metrics_that_never_end_are_unreadable_not_endless(kind, quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    metrics = model / "metrics.json"
    metrics.unlink()
    if kind == "dev-zero":
        metrics.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(metrics)
    else:
        sparse(metrics)
    with deadline(20, "metrics.json must be refused unread"):
        listing = invoke("runs", "--models-dir", tmp_path / "models")
    assert listing.exit_code == 0 and "Traceback" not in listing.output, listing.output
    (row,) = [line for line in listing.stdout.splitlines() if line.startswith("quick")]
    assert "unreadable" in row or kind == "fifo", row  # a FIFO is no metrics file: "empty"
    args = ["compare", model, "--images-dir", tmp_path / "images"]
    expected = "no regcli model" if kind == "fifo" else str(metrics)
    refused(args, 1, [expected if kind != "fifo" else "metrics"], tmp_path)


def test_an_8gb_model_pt_is_refused_unread(exported, tmp_path):
    model = copy_model(exported, tmp_path / "models")
    sparse(model / "model.pt")
    for backend in ("onnx", "torch"):
        args = ["evaluate", model, "--backend", backend, "--data-dir", DATA_DIR]
        refused(args, 1, ["model.pt", "limit"], tmp_path)


def test_a_lock_or_readme_that_is_a_fifo_never_blocks(quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    os.mkfifo(model / ".lock")
    with deadline(20, "a FIFO as .lock must not block"):
        listing = invoke("runs", "--models-dir", tmp_path / "models")
        compared = invoke("compare", model, "--images-dir", tmp_path / "images")
    assert listing.exit_code == 0 and compared.exit_code == 0, listing.output + compared.output
    refused(["export", model, "--data-dir", DATA_DIR], 1, ["a FIFO, not a lock file"], tmp_path)
    os.unlink(model / ".lock")
    os.mkfifo(tmp_path / "README.md")
    args = report_args(model, tmp_path, tmp_path / "README.md")
    refused(args, 1, ["not a regular file (a FIFO)"], tmp_path)


@pytest.mark.parametrize(
    "table, fragment",
    [
        ('l1 = "1e-6:1e-3:100"\nweight_decay = "1e-6:1e-2:100"\ngrid = "product"', "cells"),
        ('l1 = "' + ",".join(f"1.{k}e-6:1e-3:60" for k in range(20)) + '"', "strengths"),
        ('l1 = "1e-6:1e-3:100"\nweight_decay = "1e-6:1e-2:100"\nseeds = 100', "models"),
        (
            'l1 = "1e-6:1e-3:8"\nweight_decay = "1e-6:1e-2:8"\nseeds = 1\n'
            f"train_sizes = [{', '.join(str(100 + n) for n in range(100))}]",
            "17 cells x 100 training-set sizes = 1,700",
        ),
    ],
    ids=["product-10201-cells", "ranges-joined-by-commas", "cells-times-seeds", "cells-x-sizes"],
)
def test_sweep_grids_are_capped_before_anything_is_built(table, fragment, tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(f"epochs = 1\n\n[sweep]\n{table}\n")
    args = ["sweep", "--config", config, "--dry-run", *places(tmp_path)]
    line = refused(args, 2, [fragment], tmp_path, seconds=10)
    assert any(ch.isdigit() for ch in line), line  # it names the count


# --- 4. forged or damaged files are never taken as genuine --------------------------------------


@pytest.mark.parametrize("forgery", ["copied", "copied-and-relabelled"])
def test_a_copied_seed_is_refused_by_compare_and_report(forgery, tiny_group, tmp_path):
    group = tmp_path / "models" / "grp"
    shutil.copytree(tiny_group, group)
    shutil.rmtree(group / "seed-1")
    for k in (1, 2):
        shutil.copytree(group / "seed-0", group / f"seed-{k}")
        if forgery == "copied-and-relabelled":
            relabel(group / f"seed-{k}", seed=k)
    images = ["--images-dir", tmp_path / "images"]
    if forgery == "copied-and-relabelled":  # each folder passes alone; the group does not
        refused(["compare", group, *images], 1, ["identical weights"], tmp_path)
    else:  # each copy is refused on its own, one line each; the genuine seed is shown
        compared = invoke("compare", group, *images)
        no_traceback(compared)
        errors = [line for line in compared.stderr.splitlines() if line.startswith("error")]
        assert compared.exit_code == 1 and len(errors) == 2, compared.output
        assert all("says seed 0" in line for line in errors), errors
    reason = "says seed 0" if forgery == "copied" else "identical weights"
    result = invoke("report", group, "--data-dir", DATA_DIR, *images)
    no_traceback(result)
    one_line_error(result, 1, reason)


def forged_onnx(model_dir: Path, change) -> None:
    """The real export with its graph changed by `change`, its metadata kept (or made to match
    the new content, if change returns True)."""
    proto = onnx.load(str(model_dir / "model.onnx"))
    if change(proto):
        props = {p.key: p.value for p in proto.metadata_props}
        props[CONTENT_KEY] = content_sha256(proto.SerializeToString())
        onnx.helper.set_model_props(proto, props)
    (model_dir / "model.onnx").write_bytes(proto.SerializeToString())


def other_weights(proto) -> bool:
    """Another network in the same graph: the first conv's weights replaced."""
    first = proto.graph.initializer[0]
    values = numpy_helper.to_array(first)
    rng = np.random.default_rng(0)
    first.CopyFrom(numpy_helper.from_array(rng.normal(size=values.shape).astype(values.dtype),
                                           first.name))  # fmt: skip
    return False


def nan_weights(proto) -> bool:
    """A broken network whose provenance is consistent (its content digest updated)."""
    first = proto.graph.initializer[0]
    values = numpy_helper.to_array(first).copy()
    values.flat[0] = np.nan
    first.CopyFrom(numpy_helper.from_array(values, first.name))
    return True


@pytest.mark.parametrize(
    "change, reason",
    [(other_weights, "metadata copied"), (nan_weights, "NaN or infinite logits")],
    ids=["metadata-copied-onto-other-weights", "nan-logits"],
)
@pytest.mark.parametrize("command", ["evaluate", "misclassified", "predict"])
def test_a_forged_or_broken_onnx_file_is_refused(change, reason, command, exported, mnist,
                                                 tmp_path):  # fmt: skip
    model = copy_model(exported, tmp_path / "models")
    forged_onnx(model, change)
    np.save(tmp_path / "digits.npy", mnist[1].images[:3])
    extra = {
        "evaluate": ["--data-dir", DATA_DIR],
        "misclassified": ["--data-dir", DATA_DIR, "--images-dir", tmp_path / "images"],
        "predict": [tmp_path / "digits.npy"],
    }[command]
    refused([command, model, "--backend", "onnx", *extra], 1, [reason], tmp_path)


def nan_weight(model_dir: Path) -> None:
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    name = next(k for k in payload["state_dict"] if k.endswith("0.weight"))
    payload["state_dict"][name].view(-1)[0] = float("nan")
    torch.save(payload, model_dir / "model.pt")


@pytest.mark.parametrize("command", ["evaluate", "export", "misclassified", "compare"])
def test_a_nan_weight_is_refused_naming_the_file(command, quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    nan_weight(model)
    extra = ["--images-dir", tmp_path / "images"] if command in ("misclassified", "compare") else []
    extra += ["--data-dir", DATA_DIR] if command != "compare" else []
    before = tree(tmp_path)
    result = invoke(command, model, *extra)
    fails_cleanly(result, 1, ["NaN", str(model / "model.pt")], before, tmp_path)
    assert result.stdout == ""  # no table header of a table with no rows


def test_export_parity_fails_on_nan(monkeypatch, quick_model):
    from regcli.inference import export
    from regcli.store.checkpoints import load_model

    model, _ = load_model(quick_model)
    images = np.zeros((256, 28, 28), dtype=np.uint8)
    monkeypatch.setattr(export, "onnx_session", lambda data: NanSession())
    with pytest.raises(export.RegcliError, match="NaN"):
        export.check_parity(model, b"", images)


class NanSession:
    def run(self, outputs, feeds):
        return [np.full((len(feeds["image"]), 10), np.nan, dtype=np.float32)]


def test_groups_are_real_seed_folders_counted_once(tiny_group, quick_model, tmp_path):
    models = tmp_path / "models"
    for parent in ("a", "b"):
        copy_model(quick_model, models / parent, "m")
    result = invoke("compare", models / "a" / "m", models / "b" / "m", "--json",
                    "--models-dir", models, "--images-dir", tmp_path / "images")  # fmt: skip
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert [m["model"] for m in listing["models"]] == ["a/m", "b/m"]
    assert listing["seed_groups"] == []  # two runs that share a last name are no group
    shown = invoke("misclassified", models / "a" / "m", models / "b" / "m", "--count", "2",
                   "--data-dir", DATA_DIR, *places(tmp_path)[:4])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert {p.name for p in (tmp_path / "images").glob("*_misclassified.png")} == {
        "a_m_misclassified.png",
        "b_m_misclassified.png",
    }
    seeds = [tiny_group / "seed-0", tiny_group / "seed-0", tiny_group / "seed-1"]
    twice = invoke("compare", *seeds, "--json", "--images-dir", tmp_path / "images")
    assert twice.exit_code == 0, twice.output
    (group,) = json.loads(twice.stdout)["seed_groups"]
    assert group["seeds"] == 2 and len(json.loads(twice.stdout)["models"]) == 2


def test_figures_of_two_selections_never_share_a_file(quick_model, tmp_path):
    names = set()
    for parent in ("one", "two"):
        model = copy_model(quick_model, tmp_path / parent)
        result = invoke("weights", model, "--images-dir", tmp_path / "images")
        assert result.exit_code == 0, result.output
        names.add(result.stderr.strip().split()[-1])
    assert len(names) == 2 and all(Path(n).is_file() for n in names), names


# --- 5. damaged payloads: one line, before any work ----------------------------------------------


def payload(change):
    return edit_checkpoint("model.pt", change)


PAYLOAD_DAMAGE = [
    pytest.param(payload(lambda p: p.pop("final")), id="no-final"),
    pytest.param(payload(lambda p: p.pop("epochs")), id="no-epochs"),
    pytest.param(payload(lambda p: p.pop("parameters")), id="no-parameters"),
    pytest.param(payload(lambda p: p["final"].update(test_accuracy="99%")), id="string-accuracy"),
    pytest.param(payload(lambda p: p.update(epochs=7)), id="epochs-not-the-configs"),
]


@pytest.mark.parametrize("command", ["export", "compare", "evaluate"])
@pytest.mark.parametrize("damage", PAYLOAD_DAMAGE)
def test_a_model_pt_of_the_wrong_schema_is_one_line(command, damage, quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    damage(model)
    extra = ["--images-dir", tmp_path / "images"] if command == "compare" else []
    extra += ["--data-dir", DATA_DIR] if command != "compare" else []
    refused([command, model, *extra], 1, ["not a consistent regcli checkpoint"], tmp_path)


def nan_metrics(model_dir: Path) -> None:
    metrics = json.loads((model_dir / "metrics.json").read_text())
    metrics["epochs"][-1]["test_accuracy"] = float("nan")
    (model_dir / "metrics.json").write_text(json.dumps(metrics))  # writes NaN, as Python does


@pytest.mark.parametrize("json_output", [[], ["--json"]])
def test_metrics_with_nan_accuracies(json_output, quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    nan_metrics(model)
    listing = invoke("runs", "--models-dir", tmp_path / "models", *json_output)
    assert listing.exit_code == 0 and "Traceback" not in listing.output, listing.output
    assert "unreadable" in listing.stdout and "nan" not in listing.stdout.split()
    if json_output:  # strict JSON: no NaN anywhere
        json.loads(listing.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    args = ["compare", model, "--images-dir", tmp_path / "images", *json_output]
    refused(args, 1, [str(model / "metrics.json")], tmp_path)


def more_epochs(state):
    """Three records, numbered 1..3, for a run of two epochs."""
    state["history"] = [{**state["history"][0], "epoch": k} for k in (1, 2, 3)]


LAST_DAMAGE = [
    pytest.param(more_epochs, "3 epoch records", id="more-epochs-than-the-config"),
    pytest.param(
        lambda s: s["history"].append({**s["history"][0]}), "numbered 1", id="epochs-renumbered"
    ),
    pytest.param(lambda s: s["run"].update(seconds="fast"), "seconds", id="run-seconds-string"),
    pytest.param(
        lambda s: s["history"][0].update(test_loss="low"), "test_loss", id="record-string"
    ),
    pytest.param(lambda s: s["group"].update(size=5), "training group", id="group-size"),
    pytest.param(
        lambda s: s["momentum"][next(iter(s["momentum"]))].fill_(float("inf")),
        "NaN or infinite",
        id="momentum-inf",
    ),
]


@pytest.mark.parametrize("change, reason", LAST_DAMAGE)
def test_an_inconsistent_last_pt_is_refused_before_any_training(
    change, reason, interrupted, tmp_path
):
    run_dir = copy_model(interrupted, tmp_path / "models", "run")
    edit_checkpoint("last.pt", change)(run_dir)
    before = tree(tmp_path)
    fails_cleanly(resume(tmp_path), 1, [str(run_dir / "last.pt"), reason], before, tmp_path)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_strength_whose_products_overflow_is_a_usage_error(command, tmp_path):
    args = [command, "--l1", "1e39", *RESUME_OPTIONS, *places(tmp_path)]
    refused(args, 2, ["--l1"], tmp_path)


# --- 6. odd folders: deep, empty, hostile names ------------------------------------------------


def nest(folder: Path, depth: int) -> list[int]:
    """folder/x/x/.../x, depth deep, made relative to open folders (no path is too long);
    returns the open folders, outermost first, for `unnest`."""
    folder.mkdir()
    fds = [os.open(folder, os.O_RDONLY)]
    for _ in range(depth):
        os.mkdir("x", dir_fd=fds[-1])
        fds.append(os.open("x", os.O_RDONLY, dir_fd=fds[-1]))
    return fds


def unnest(fds: list[int]) -> None:
    """Remove what nest made, innermost first (shutil.rmtree would recurse 1,100 deep)."""
    os.close(fds.pop())
    while len(fds) > 1:
        os.rmdir("x", dir_fd=fds[-1])
        os.close(fds.pop())
    os.close(fds.pop())


def test_a_folder_nested_1100_deep(quick_model, tmp_path):
    models = tmp_path / "models"
    copy_model(quick_model, models)
    fds = nest(models / "deep", 1100)
    try:
        listing = invoke("runs", "--models-dir", models)
        compared = invoke("compare", "--models-dir", models, "--images-dir", tmp_path / "images")
    finally:
        unnest(fds)
    for result in (listing, compared):
        no_traceback(result)
        assert result.exit_code == 0, result.output
    assert "quick" in listing.stdout and "quick" in compared.stdout


def test_runs_on_an_empty_models_folder(tmp_path):
    (tmp_path / "models").mkdir()
    result = invoke("runs", "--models-dir", tmp_path / "models")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "no runs" in result.stderr and not result.stdout.strip()


def test_names_from_disk_are_printed_terminal_safe(quick_model, tmp_path):
    models = tmp_path / "models"
    copy_model(quick_model, models, "evil\n\x1b[31mfake row")
    result = invoke("runs", "--models-dir", models)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b[31m" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 2  # the header and one row, not a forgery


# --- 7. a sweep read back: cells, seeds, caches, run records -------------------------------------

SWEEP = ["--l1", "0,1e-3", "--weight-decay", "0", "--seeds", "2", *TINY, "--data-dir", DATA_DIR]


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> Path:
    """A finished sweep of two cells x two seeds (read-only: copy it)."""
    root = tmp_path_factory.mktemp("sweep")
    result = invoke("sweep", *SWEEP, "--models-dir", root / "models", "--quiet")
    assert result.exit_code == 0, result.output
    return root / "models"


def sweep_copy(small_sweep: Path, tmp_path: Path) -> Path:
    shutil.copytree(small_sweep, tmp_path / "models")
    return tmp_path / "models" / "sweep"


def sweep_report(tmp_path: Path, *extra):
    return invoke("sweep", "--report", *SWEEP, *places(tmp_path), *extra)


def test_a_finished_seed_without_its_model_is_missing_not_diverged(small_sweep, tmp_path):
    folder = sweep_copy(small_sweep, tmp_path)
    (folder / "l1-0.001_wd-0" / "seed-1" / "model.pt").unlink()
    result = sweep_report(tmp_path)
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("l1-0.001_wd-0")]
    assert "1 missing" in row and "diverged" not in row, row


def test_a_cell_folder_must_carry_its_canonical_name(small_sweep, tmp_path):
    folder = sweep_copy(small_sweep, tmp_path)
    (folder / "l1-0.001_wd-0").rename(folder / "l1-1e-3_wd-0")
    refused(["sweep", "--report", *SWEEP, *places(tmp_path)], 1, ["l1-1e-3_wd-0", "l1-0.001_wd-0"],
            tmp_path)  # fmt: skip


def test_a_copied_seed_is_refused_in_a_sweep(small_sweep, tmp_path):
    folder = sweep_copy(small_sweep, tmp_path) / "l1-0_wd-0"
    shutil.rmtree(folder / "seed-1")
    shutil.copytree(folder / "seed-0", folder / "seed-1")
    refused(["sweep", "--report", *SWEEP, *places(tmp_path)], 1, ["says seed 0"], tmp_path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5.0, "99", 1e9])
def test_a_pruning_cache_of_impossible_numbers_is_measured_again(value, small_sweep, tmp_path):
    folder = sweep_copy(small_sweep, tmp_path)
    first = sweep_report(tmp_path, "--json")
    assert first.exit_code == 0, first.output
    cache = folder / "l1-0_wd-0" / "seed-0" / "pruning.json"
    data = json.loads(cache.read_text())
    measured = dict(data["accuracy"])
    data["accuracy"] = {**measured, "0.5": value}
    cache.write_text(json.dumps(data))
    again = sweep_report(tmp_path, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == json.loads(first.stdout)  # measured, not the cache's
    warned = [line for line in again.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and str(cache) in warned[0] and "measured again" in warned[0]
    assert json.loads(cache.read_text())["accuracy"] == measured  # refreshed


def test_odd_run_records_in_a_finished_cell_are_one_line(small_sweep, tmp_path):
    folder = sweep_copy(small_sweep, tmp_path)
    metrics_path = folder / "l1-0_wd-0" / "seed-0" / "metrics.json"
    edit_json(metrics_path, run={"seconds": "fast", "group": {"size": "x"}})
    args = ["sweep", *SWEEP, *places(tmp_path), "--dry-run"]
    refused(args, 1, [str(metrics_path), "run record"], tmp_path)


# --- 8. what a review found: linked parents, hard links, forged digests, names ------------------


def test_a_folder_under_models_dir_that_leads_elsewhere_through_a_link(tiny_group, tmp_path):
    secret = private(tmp_path)
    elsewhere = tmp_path / "outside" / "grp"
    shutil.copytree(tiny_group, elsewhere)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "grp").symlink_to(elsewhere)
    args = ["export", tmp_path / "models" / "grp" / "seed-0", "--force", "--data-dir", DATA_DIR]
    refused([*args, "--models-dir", tmp_path / "models"], 1, ["leads outside"], tmp_path)
    untouched(secret)


def test_a_cell_folder_that_is_a_link_is_not_read(small_sweep, tmp_path):
    folder = sweep_copy(small_sweep, tmp_path)
    elsewhere = tmp_path / "outside" / "cell"
    shutil.move(folder / "l1-0.001_wd-0", elsewhere)
    (folder / "l1-0.001_wd-0").symlink_to(elsewhere)
    outside = tree(tmp_path / "outside")
    result = sweep_report(tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert [c["cell"] for c in json.loads(result.stdout)] == ["l1-0_wd-0"]
    assert tree(tmp_path / "outside") == outside  # no pruning cache, no lock written there


def test_a_lock_file_with_a_second_hard_link_is_refused(exported, tmp_path):
    secret = private(tmp_path)
    model = copy_model(exported, tmp_path / "models")
    os.link(secret, model / ".lock")
    args = ["export", model, "--force", "--data-dir", DATA_DIR]
    refused(args, 1, ["hard link"], tmp_path)
    untouched(secret)


def test_an_onnx_file_forged_with_a_recomputed_digest_is_exported_again(exported, tmp_path):
    from regcli.inference.export import up_to_date

    model = copy_model(exported, tmp_path / "models")
    forged_onnx(model, lambda proto: other_weights(proto) or True)  # digest made to match
    assert not up_to_date(model) and up_to_date(exported)
    result = invoke("export", model, "--data-dir", DATA_DIR)
    assert result.exit_code == 0 and "exported" in result.stderr, result.output


@pytest.mark.parametrize("command", ["compare", "weights", "evaluate"])
def test_a_newline_in_a_folder_name_forges_no_row(command, exported, tmp_path):
    models = tmp_path / "models"
    copy_model(exported, models, "x\nevil\x1b[31m")
    extra = ["--data-dir", DATA_DIR] if command == "evaluate" else ["--images-dir", tmp_path]
    result = invoke(command, "--models-dir", models, *extra)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x0aevil\\x1b[31m" in result.stdout
    assert not any(line.startswith("evil") for line in result.stdout.splitlines())


def test_two_models_of_one_figure_name_get_two_figures(exported, tmp_path):
    models = tmp_path / "models"
    copy_model(exported, models, "a_b")
    copy_model(exported, models / "a", "b")
    args = ["misclassified", models / "a_b", models / "a" / "b", "--backend", "onnx"]
    result = invoke(*args, "--count", "2", "--data-dir", DATA_DIR, *places(tmp_path)[:4])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "images").glob("a_b*_misclassified.png"))) == 2


def test_models_of_one_last_name_are_told_apart_everywhere(exported, tmp_path):
    models = tmp_path / "models"
    for parent in ("a", "b"):
        copy_model(exported, models / parent, "m")
    pair = [models / "a" / "m", models / "b" / "m"]
    evaluated = invoke("evaluate", *pair, "--json", "--data-dir", DATA_DIR, "--models-dir", models)
    weighed = invoke("weights", *pair, "--json", "--images-dir", tmp_path, "--models-dir", models)
    for result in (evaluated, weighed):
        assert result.exit_code == 0, result.output
        assert [r["model"] for r in json.loads(result.stdout)] == ["a/m", "b/m"]


def test_a_failed_compare_leaves_the_figures_as_they_were(quick_model, tmp_path):
    models = tmp_path / "models"
    good, bad = copy_model(quick_model, models, "good"), copy_model(quick_model, models, "bad")
    (bad / "metrics.json").write_text("{")
    before = tree(tmp_path)
    result = invoke("compare", "--models-dir", models, "--images-dir", tmp_path / "images")
    no_traceback(result)
    assert result.exit_code == 1 and "no figure written" in result.stderr, result.output
    assert tree(tmp_path) == before and good.is_dir()


@pytest.mark.parametrize(
    "damage, command",
    [
        (lambda m: edit_json(m / "metrics.json", run={"group": [1]}), "report"),
        (lambda m: edit_json(m / "metrics.json", run={"seconds": "fast"}), "compare"),
        (payload(lambda p: p.update(run={"x": torch.ones(1)})), "export"),
    ],
    ids=["metrics-group-a-list", "metrics-seconds-a-string", "model-run-a-tensor"],
)
def test_a_run_record_of_the_wrong_shape_is_one_line(damage, command, quick_model, tmp_path):
    model = copy_model(quick_model, tmp_path / "models")
    damage(model)
    extra = ["--images-dir", tmp_path / "images"] if command != "export" else []
    extra += ["--data-dir", DATA_DIR] if command != "compare" else []
    refused([command, model, *extra], 1, ["run record"], tmp_path)


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_a_config_table_that_is_not_a_table(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text("sweep = 5\n")
    refused(["sweep", "--config", config, "--dry-run", *places(tmp_path)], 2, ["[sweep]"], tmp_path)


def test_write_probe_of_one_job_never_removes_another_jobs(tmp_path):
    """Two jobs checking one images folder at once: each probes with its own file."""
    other = tmp_path / f".write-test.{os.getpid() + 1}"
    other.write_bytes(b"")
    files.ensure_writable(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


# --- 9. values nested thousands deep, or megabytes long ---------------------------------------


def test_a_config_nested_thousands_deep_is_one_line(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("l1 = " + "[" * 2000 + "]" * 2000)
    for command in (["train", "--print-config"], ["sweep", "--dry-run"]):
        refused([*command, "--config", deep, *places(tmp_path)], 2, ["nested too deeply"], tmp_path)


@pytest.mark.parametrize(
    "value", [pytest.param("nested", id="nested-1500-deep"), pytest.param("long", id="5-MB")]
)
def test_a_setting_nested_deep_or_megabytes_long_in_a_model_pt_is_one_short_line(
    value, exported, tmp_path
):
    model = copy_model(exported, tmp_path / "models")
    bad = "x" * 5_000_000 if value == "long" else 1.0
    if value == "nested":
        for _ in range(1500):
            bad = [bad]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # for pickling it: a forger's tool, not regcli's
    try:
        edit_checkpoint("model.pt", lambda p: p["config"].update(l1=bad))(model)
    finally:
        sys.setrecursionlimit(limit)
    figures = ["--images-dir", tmp_path / "images"]
    commands = [["compare", model, *figures], ["weights", model, *figures],
                ["export", model, "--force", "--data-dir", DATA_DIR]]  # fmt: skip
    for args in commands:
        line = refused(args, 1, ["--l1 must be a number"], tmp_path)
        assert len(line) < 400, line


def test_a_finished_seed_whose_model_pt_is_gone_is_missing_everywhere(tiny_group, tmp_path):
    """compare and report refuse to average one seed fewer; runs says missing; train again."""
    models = tmp_path / "models"
    shutil.copytree(tiny_group, models / "grp")
    (models / "grp" / "seed-1" / "model.pt").unlink()
    for args in (["compare", models / "grp"], ["compare"], ["weights", models / "grp"]):
        refused([*args, "--models-dir", models, "--images-dir", tmp_path / "images"], 1,
                ["seed-1", "model.pt is missing"], tmp_path)  # fmt: skip
    listed = invoke("runs", "--models-dir", models, "--json")
    states = {r["name"]: r["state"] for r in json.loads(listed.stdout)}
    assert states == {"grp/seed-0": "finished", "grp/seed-1": "missing"}


def test_a_link_where_a_run_writes_is_refused_before_the_old_run_is_replaced(quick_model, tmp_path):
    models = tmp_path / "models"
    model = copy_model(quick_model, models)
    secret = private(tmp_path)
    (model / "metrics.csv").unlink()
    (model / "metrics.csv").symlink_to(secret)
    args = ["train", "--name", "quick", "--force", *TINY, "--models-dir", models]
    refused([*args, "--images-dir", tmp_path / "images", "--data-dir", DATA_DIR], 1,
            ["metrics.csv", "symbolic link"], tmp_path)  # fmt: skip
    untouched(secret)


def test_an_mnist_file_that_is_a_fifo_is_named_not_taken_for_missing(exported, tmp_path):
    data = tmp_path / "data" / "MNIST" / "raw"
    shutil.copytree(DATA_DIR / "MNIST" / "raw", data)
    (data / "t10k-images-idx3-ubyte.gz").unlink()
    os.mkfifo(data / "t10k-images-idx3-ubyte.gz")
    args = ["evaluate", exported, "--backend", "onnx", "--data-dir", tmp_path / "data"]
    refused(args, 1, ["t10k-images-idx3-ubyte.gz", "not a regular file (a FIFO)"], tmp_path)
