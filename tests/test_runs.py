"""Runs on disk: identical-configuration reuse and resume, names inside --models-dir, default
names, one writer per model, ONNX provenance, resume hints, what commands write, multi-model
commands past a bad model, and `regcli runs`. Every run is a real (tiny) run on real MNIST."""

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from regcli.core.config import TrainConfig
from regcli.core.errors import Interrupted
from regcli.data.mnist import load_split
from regcli.jobs.runs import Request
from tests.conftest import (
    DATA_DIR,
    REPO,
    TINY,
    Interrupter,
    invoke,
    one_line_error,
    places,
    snapshot,
    train_cpu,
    train_model,
)

TINY_CONFIG = TrainConfig(epochs=1, limit_train=256, limit_test=128, l1=1e-5, weight_decay=1e-4)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """This 2-core machine is shared: under load PyTorch's two threads spin against each other
    (a tiny run measured 4.8 s with two threads, 1.0 s with one). Restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(epochs: int = 1) -> list[str]:
    """TINY with another number of epochs (256 images: two batches per epoch)."""
    args = list(TINY)
    args[args.index("--epochs") + 1] = str(epochs)
    return args


def metrics(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "metrics.json").read_text())


def stopped(result, fragment: str = "") -> str:
    """Training was interrupted (exit 130) and the last stderr line, the only error line, says
    so and how to go on (epoch lines and announcements may come before it); no traceback."""
    assert result.exit_code == 130, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(("error:", "interrupted:"))]
    assert errors == lines[-1:] and lines[-1].startswith("interrupted: "), lines
    assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


def hint(line: str, label: str) -> list[str]:
    """The command a one-line error suggests after `label` (e.g. 'resume with: '), as args."""
    assert label in line, (label, line)
    words = shlex.split(line.split(label, 1)[1])
    assert words[0] == "regcli", line
    return words[1:]


@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory) -> Path:
    """One tiny l1_l2 model with its model.onnx (read-only: copy it with place())."""
    from regcli.inference.export import export_model

    model_dir = train_model(TINY_CONFIG, "tiny", tmp_path_factory.mktemp("tiny") / "models")
    export_model(model_dir, data_dir=DATA_DIR)
    return model_dir


def place(source: Path, target: Path, onnx: bool = True) -> Path:
    """A writable copy of a model folder (without its model.onnx unless onnx)."""
    shutil.copytree(source, target)
    if not onnx:
        (target / "model.onnx").unlink()
    return target


# --- interrupting a run: SIGINT to this process from inside the trainer ------------------


def interrupted_run(models: Path, name: str, config: TrainConfig) -> Path:
    """A run of config stopped by Ctrl-C after its first epoch: models/name/last.pt."""
    with pytest.raises(Interrupted):
        train_cpu([Request(config, name)], models, reporter=Interrupter(1))
    assert (models / name / "last.pt").is_file()
    assert not (models / name / "model.pt").exists()
    return models / name


def invoke_interrupted(monkeypatch, at: str, *args):
    """`regcli train ...` in-process, with its reporter sending SIGINT (see Interrupter)."""
    from regcli.cli.console import TrainingReporter

    class Interrupting(TrainingReporter):
        def step_done(self):
            super().step_done()
            if at == "step":
                self.fire()

        def epoch_finished(self, epoch, records, notes):
            super().epoch_finished(epoch, records, notes)
            if at == "epoch":
                self.fire()

        def fire(self):
            if not getattr(self, "fired", False):
                self.fired = True
                os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patched:
        patched.setattr("regcli.cli.training.TrainingReporter", Interrupting)
        return invoke(*args)


# --- another process holding a model's lock ---------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from regcli.core.locks import ModelLock
ModelLock(Path(sys.argv[1]), "regcli train").acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def hold():
    """hold(model_dir) -> a live process holding model_dir's lock (killed at teardown)."""
    started = []

    def start(model_dir: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(model_dir)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout.readline().strip() == "locked"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def sigkill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


# === 1. reuse and resume only the identical configuration ===================================


def test_seeds_rerun_with_other_settings_is_refused_naming_fields_and_group_is_unchanged(
    tmp_path,
):
    group = tmp_path / "models" / "grp"
    args = ["train", "--name", "grp", "--l1", "1e-5"]
    first = invoke(*args, "--seeds", "2", *TINY, *places(tmp_path))
    assert first.exit_code == 0, first.output
    before = snapshot(tmp_path)
    assert {p.name for p in group.iterdir()} == {"seed-0", "seed-1"}

    other = [
        *("train", "--name", "grp", "--l1", "1e-3", "--seeds", "3"),
        *tiny(epochs=2),
        *places(tmp_path),
    ]
    line = one_line_error(invoke(*other), 2)
    for fragment in ("grp", "l1", "1e-05", "0.001", "epochs", "--force", "--name"):
        assert fragment in line, (fragment, line)
    for same in ("lr", "limit_train", "weight_decay", "batch_size"):  # only what differs
        assert f" {same} " not in line, line
    assert snapshot(tmp_path) == before
    assert not (group / "seed-2").exists()

    # the identical settings with one more seed: seeds 0 and 1 reused as they are, 2 trained
    more = invoke(*args, "--seeds", "3", *TINY, *places(tmp_path))
    assert more.exit_code == 0, more.output
    assert "reusing" in more.stderr
    for k in (0, 1):
        model = group / f"seed-{k}" / "model.pt"
        assert model.read_bytes() == before[model]
    assert metrics(group / "seed-2")["config"]["seed"] == 2


def test_resume_with_other_settings_is_refused_and_the_identical_one_resumes(tmp_path):
    models = tmp_path / "models"
    config = TrainConfig(epochs=2, limit_train=256, limit_test=128)
    run = interrupted_run(models, "cut", config)
    before = snapshot(tmp_path)

    args = ["train", "--name", "cut", "--resume", *tiny(epochs=2), *places(tmp_path)]
    line = one_line_error(invoke(*args, "--lr", "0.05"), 2)
    for fragment in ("cut", "lr", "0.1", "0.05", "--force", "--name"):
        assert fragment in line, (fragment, line)
    assert snapshot(tmp_path) == before

    resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    assert not (run / "last.pt").exists()
    assert [r["epoch"] for r in metrics(run)["epochs"]] == [1, 2]


def test_compare_and_report_refuse_a_seed_group_of_mixed_configurations(tmp_path):
    models = tmp_path / "models"
    base = TrainConfig(epochs=1, limit_train=256, limit_test=128)
    train_model(replace(base, seed=0), "grp/seed-0", models)
    train_model(replace(base, seed=1, l1=1e-4), "grp/seed-1", models)
    figure = tmp_path / "images" / "model_compare.png"

    for args in (["compare", models / "grp"], ["compare"]):  # given, and every model
        line = one_line_error(invoke(*args, *places(tmp_path)[:4]), 1)
        assert "grp" in line and "l1" in line and "0.0001" in line, line
    assert not figure.exists()

    line = one_line_error(invoke("report", models / "grp", *places(tmp_path)), 1)
    assert "grp" in line and "l1" in line, line
    assert not figure.exists()


def test_a_folder_of_seed_folders_stands_for_its_seeds(tiny_group, tmp_path):
    group = place(tiny_group, tmp_path / "models" / "grp")
    evaluated = invoke("evaluate", group, "--backend", "onnx", "--json", "--data-dir", DATA_DIR)
    assert evaluated.exit_code == 0, evaluated.output
    assert [r["model"] for r in json.loads(evaluated.stdout)] == ["grp/seed-0", "grp/seed-1"]

    shown = invoke(
        "misclassified", group, "--backend", "onnx", "--count", "2", "--json", *places(tmp_path)
    )
    assert shown.exit_code == 0, shown.output
    assert [r["model"] for r in json.loads(shown.stdout)] == ["grp/seed-0", "grp/seed-1"]

    weights = invoke("weights", group, "--json", *places(tmp_path)[:4])
    assert weights.exit_code == 0, weights.output
    assert [r["model"] for r in json.loads(weights.stdout)] == ["grp/seed-0", "grp/seed-1"]

    compared = invoke("compare", group, "--json", *places(tmp_path)[:4])
    assert compared.exit_code == 0, compared.output
    (entry,) = json.loads(compared.stdout)["seed_groups"]
    assert entry["group"] == "grp" and entry["seeds"] == 2


# === 2. names stay inside --models-dir ========================================================


@pytest.mark.parametrize("name", [".", "..", "...", "-x", "-", "--force", "../out", "a/../.."])
def test_train_refuses_a_name_outside_models_dir(name, tmp_path):
    line = one_line_error(invoke("train", f"--name={name}", *TINY, *places(tmp_path)), 2, "--name")
    assert any(part in line for part in name.split("/")), line
    assert list(tmp_path.iterdir()) == []  # not even an empty folder


@pytest.mark.parametrize("name", [".", "..", "-x"])
def test_sweep_refuses_a_name_outside_models_dir(name, tmp_path):
    args = ["sweep", f"--name={name}", "--l1", "0", "--weight-decay", "0", "--seeds", "1"]
    one_line_error(invoke(*args, "--dry-run", *TINY, *places(tmp_path)), 2, "--name")
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_in_models_dir_pointing_outside_is_refused(tmp_path):
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    (models / "link").symlink_to(outside, target_is_directory=True)
    line = one_line_error(invoke("train", "--name", "link", *TINY, *places(tmp_path)), 2)
    assert "link" in line and "--models-dir" in line, line
    sweep = ["sweep", "--name", "link", "--l1", "0", "--weight-decay", "0", "--seeds", "1"]
    one_line_error(invoke(*sweep, *TINY, *places(tmp_path)), 2, "link")
    assert list(outside.iterdir()) == []
    assert [p.name for p in models.iterdir()] == ["link"]


def test_a_seed_folder_symlink_pointing_outside_is_refused(tmp_path):
    models, outside = tmp_path / "models", tmp_path / "outside"
    (models / "grp").mkdir(parents=True)
    outside.mkdir()
    (models / "grp" / "seed-0").symlink_to(outside, target_is_directory=True)
    result = invoke("train", "--name", "grp", "--seeds", "1", *TINY, *places(tmp_path))
    line = one_line_error(result, 2, "seed-0")
    assert "--models-dir" in line, line
    assert list(outside.iterdir()) == []


def test_clean_up_of_temporaries_touches_only_the_runs_own_folder(tmp_path, monkeypatch):
    models = tmp_path / "models"
    strays = {
        models / ".x.tmp": b"not regcli's",
        models / ".model.pt.abc.tmp": b"nor this",
        models / "other" / ".metrics.json.abc.tmp": b"another model's",
    }
    for path, data in strays.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    done = invoke("train", "--name", "run", *TINY, *places(tmp_path))
    assert done.exit_code == 0, done.output
    cut = invoke_interrupted(
        monkeypatch, "epoch", "train", "--name", "cut", *tiny(2), *places(tmp_path)
    )
    stopped(cut)
    for path, data in strays.items():
        assert path.read_bytes() == data, path
    for name in ("run", "cut"):
        assert not [p.name for p in (models / name).iterdir() if p.name.endswith(".tmp")]


# === 3. the default name never fails and never overwrites =====================================


def test_default_name_is_the_mode_then_the_next_free_version_and_says_which(tmp_path):
    models = tmp_path / "models"
    args = ["train", "--l1", "1e-5", "--weight-decay", "1e-4", *TINY, *places(tmp_path)]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert str(models / "l1_l2") in first.stderr
    taken = snapshot(models / "l1_l2")
    for number in (1, 2):
        again = invoke(*args)
        assert again.exit_code == 0, again.output
        folder = models / f"l1_l2-{number}"
        said = [line for line in again.stderr.splitlines() if str(folder) in line]
        assert said, again.stderr
        assert (folder / "model.pt").is_file()
    assert snapshot(models / "l1_l2") == taken
    assert sorted(p.name for p in models.iterdir()) == ["l1_l2", "l1_l2-1", "l1_l2-2"]


def test_default_name_moves_on_when_the_mode_folder_is_locked(tmp_path, hold):
    models = tmp_path / "models"
    holder = hold(models / "none")
    result = invoke("train", *TINY, *places(tmp_path))
    assert result.exit_code == 0, result.output
    assert str(models / "none-1") in result.stderr
    assert (models / "none-1" / "model.pt").is_file()
    assert not (models / "none" / "model.pt").exists()
    assert holder.poll() is None


def test_seeds_without_name_reuse_the_identical_group_and_version_another(tmp_path):
    models = tmp_path / "models"
    args = ["train", "--seeds", "2", *TINY, *places(tmp_path)]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    group = snapshot(models / "none")
    assert sorted(p.name for p in (models / "none").iterdir()) == ["seed-0", "seed-1"]

    same = invoke(*args)
    assert same.exit_code == 0, same.output
    assert "reusing" in same.stderr
    assert snapshot(models / "none") == group
    assert [p.name for p in models.iterdir()] == ["none"]

    other = invoke(*args, "--lr", "0.05")
    assert other.exit_code == 0, other.output
    assert str(models / "none-1") in other.stderr
    assert snapshot(models / "none") == group
    for k in (0, 1):
        assert metrics(models / "none-1" / f"seed-{k}")["config"]["lr"] == 0.05


def test_force_without_name_replaces_the_mode_folder_but_a_given_name_is_protected(tmp_path):
    models = tmp_path / "models"
    assert invoke("train", *TINY, *places(tmp_path)).exit_code == 0
    before = snapshot(tmp_path)

    refused = invoke("train", "--name", "none", "--lr", "0.05", *TINY, *places(tmp_path))
    one_line_error(refused, 2, "--force")
    assert snapshot(tmp_path) == before

    forced = invoke("train", "--force", "--lr", "0.05", *TINY, *places(tmp_path))
    assert forced.exit_code == 0, forced.output
    assert metrics(models / "none")["config"]["lr"] == 0.05
    assert [p.name for p in models.iterdir()] == ["none"]


def test_resume_hint_of_a_versioned_run_names_the_folder_used(tmp_path, monkeypatch):
    models = tmp_path / "models"
    assert invoke("train", *TINY, *places(tmp_path)).exit_code == 0
    taken = snapshot(models / "none")

    result = invoke_interrupted(monkeypatch, "epoch", "train", *tiny(2), *places(tmp_path))
    line = stopped(result, "resume with: ")
    assert (models / "none-1" / "last.pt").is_file()
    again = hint(line, "resume with: ")
    assert "--resume" in again and again[again.index("--name") + 1] == "none-1", line

    resumed = invoke(*again)
    assert resumed.exit_code == 0, resumed.output
    assert [r["epoch"] for r in metrics(models / "none-1")["epochs"]] == [1, 2]
    assert snapshot(models / "none") == taken


def test_continue_hint_of_a_versioned_seed_group_names_the_folder_used(tmp_path, monkeypatch):
    models = tmp_path / "models"
    assert invoke("train", "--seeds", "1", *TINY, *places(tmp_path)).exit_code == 0
    taken = snapshot(models / "none")

    args = ["train", "--seeds", "1", "--lr", "0.05", *tiny(2), *places(tmp_path)]
    line = stopped(invoke_interrupted(monkeypatch, "epoch", *args))
    assert (models / "none-1" / "seed-0" / "last.pt").is_file()
    again = hint(line, "with: ")
    assert again[again.index("--name") + 1] == "none-1", line
    assert "--resume" not in again and "--force" not in again, line

    continued = invoke(*again)
    assert continued.exit_code == 0, continued.output
    assert [r["epoch"] for r in metrics(models / "none-1" / "seed-0")["epochs"]] == [1, 2]
    assert snapshot(models / "none") == taken


# === 4. one writer per model ==================================================================


def test_a_second_train_on_a_locked_model_names_the_holder_and_sigkill_leaves_nothing_stale(
    exported_tiny, tmp_path, hold
):
    models = tmp_path / "models"
    place(exported_tiny, models / "m")
    holder = hold(models / "m")
    before = snapshot(tmp_path)
    args = ["train", "--name", "m", "--force", *TINY, *places(tmp_path)]

    line = one_line_error(invoke(*args), 1, f"process {holder.pid}")
    assert "regcli train" in line, line
    assert snapshot(tmp_path) == before

    sigkill(holder)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert (
        metrics(models / "m")["config"]
        == TrainConfig(epochs=1, limit_train=256, limit_test=128).as_dict()
    )
    listed = json.loads(invoke("runs", "--models-dir", models, "--json").stdout)
    assert [(r["name"], r["state"]) for r in listed] == [("m", "finished")]


def test_a_second_export_on_a_locked_model_names_the_holder_then_runs_after_sigkill(
    exported_tiny, tmp_path, hold
):
    model_dir = place(exported_tiny, tmp_path / "models" / "m", onnx=False)
    holder = hold(model_dir)
    before = snapshot(model_dir)

    line = one_line_error(invoke("export", model_dir, "--data-dir", DATA_DIR), 1)
    assert f"process {holder.pid}" in line, line
    assert snapshot(model_dir) == before and not (model_dir / "model.onnx").exists()

    sigkill(holder)
    result = invoke("export", model_dir, "--data-dir", DATA_DIR)
    assert result.exit_code == 0, result.output
    evaluated = invoke("evaluate", model_dir, "--backend", "onnx", "--data-dir", DATA_DIR)
    assert evaluated.exit_code == 0, evaluated.output


def test_export_holds_the_lock_and_hashes_exactly_the_bytes_it_loaded(
    exported_tiny, tmp_path, monkeypatch
):
    import onnx

    import regcli.inference.export
    from regcli.core.locks import lock_holder

    model_dir = place(exported_tiny, tmp_path / "models" / "m", onnx=False)
    loaded = (model_dir / "model.pt").read_bytes()
    other = train_model(replace(TINY_CONFIG, lr=0.05), "other", tmp_path / "models")
    newer = (other / "model.pt").read_bytes()
    assert newer != loaded
    real, seen = regcli.inference.export.model_from_checkpoint, {}

    def then_replaced(*args, **kwargs):
        """After export has read model.pt: who holds the lock, then a writer that ignores it."""
        seen["holder"] = lock_holder(model_dir)
        (model_dir / "model.pt").write_bytes(newer)
        return real(*args, **kwargs)

    monkeypatch.setattr(regcli.inference.export, "model_from_checkpoint", then_replaced)
    result = invoke("export", model_dir, "--data-dir", DATA_DIR)
    assert result.exit_code == 0, result.output
    assert seen["holder"] and f"process {os.getpid()}" in seen["holder"], seen
    assert "export" in seen["holder"], seen
    props = {p.key: p.value for p in onnx.load(str(model_dir / "model.onnx")).metadata_props}
    assert props["source_sha256"] == hashlib.sha256(loaded).hexdigest()
    # so the ONNX file rightly no longer passes for the model.pt now beside it
    stale = invoke("evaluate", model_dir, "--backend", "onnx", "--data-dir", DATA_DIR)
    one_line_error(stale, 1, "regcli export")


def test_readers_never_block_on_a_locked_model(exported_tiny, tmp_path, hold):
    models = tmp_path / "models"
    model_dir = place(exported_tiny, models / "m")
    digits = tmp_path / "digits.npy"
    np.save(digits, load_split(DATA_DIR, "test").images[:3])
    holder = hold(model_dir)

    evaluated = invoke("evaluate", model_dir, "--backend", "onnx", "--data-dir", DATA_DIR)
    assert evaluated.exit_code == 0, evaluated.output
    predicted = invoke("predict", model_dir, digits, "--backend", "onnx", "--json")
    assert predicted.exit_code == 0, predicted.output
    assert len(predicted.stdout.strip().splitlines()) == 3
    (row,) = json.loads(invoke("runs", "--models-dir", models, "--json").stdout)
    assert row["state"].startswith("locked by") and str(holder.pid) in row["state"], row
    assert holder.poll() is None


# === 5. ONNX provenance is required ===========================================================


def set_source(onnx_path: Path, sha: str | None) -> None:
    """Rewrite model.onnx's source_sha256 metadata (None: remove it, as a foreign file has)."""
    import onnx

    proto = onnx.load(str(onnx_path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "source_sha256"]
    assert len(kept) == len(proto.metadata_props) - 1
    del proto.metadata_props[:]
    for key, value in kept + ([("source_sha256", sha)] if sha else []):
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(onnx_path))


@pytest.mark.parametrize("source", [None, "0" * 64], ids=["no-source", "other-source"])
def test_onnx_without_matching_provenance_is_refused(source, exported_tiny, tmp_path):
    model_dir = place(exported_tiny, tmp_path / "models" / "m")
    set_source(model_dir / "model.onnx", source)
    digits = tmp_path / "digits.npy"
    np.save(digits, load_split(DATA_DIR, "test").images[:2])
    before = snapshot(tmp_path)
    for args in (
        ["evaluate", model_dir, "--data-dir", DATA_DIR],
        ["misclassified", model_dir, "--images-dir", tmp_path / "images", "--data-dir", DATA_DIR],
        ["predict", model_dir, digits],
    ):
        line = one_line_error(invoke(*args, "--backend", "onnx"), 1, "regcli export")
        assert "model.onnx" in line, line
    assert snapshot(tmp_path) == before


# === 6. the resume hint is right ==============================================================


def test_ctrl_c_before_the_first_epoch_hints_the_same_command(tmp_path, monkeypatch):
    models = tmp_path / "models"
    args = [str(a) for a in ("train", "--name", "r", *tiny(2), *places(tmp_path))]
    line = stopped(invoke_interrupted(monkeypatch, "step", *args), "no epoch")
    assert line.endswith(f"start again with: {shlex.join(['regcli', *args])}"), line
    assert not (models / "r" / "last.pt").exists()

    again = invoke(*hint(line, "start again with: "))
    assert again.exit_code == 0, again.output
    assert (models / "r" / "model.pt").is_file()


@pytest.mark.parametrize("previous", ["finished", "interrupted", "diverged"])
@pytest.mark.parametrize("named", [True, False], ids=["--name", "default-name"])
def test_ctrl_c_before_the_first_epoch_over_a_run_hints_force(
    named, previous, tmp_path, monkeypatch
):
    """The folder still holds its previous run after the Ctrl-C: the hint needs --force."""
    models = tmp_path / "models"
    if previous == "interrupted":
        interrupted_run(models, "none", TrainConfig(epochs=2, limit_train=256, limit_test=128))
    else:
        lr = ["--lr", "1e6"] if previous == "diverged" else []
        invoke("train", "--name", "none", *lr, *TINY, *places(tmp_path))
    from regcli.jobs.runs import folder_state

    assert folder_state(models / "none") == previous
    before = snapshot(models)
    args = ["train", *(["--name", "none"] if named else []), "--force", "--lr", "0.05"]
    args += [*tiny(2), *places(tmp_path)]
    line = stopped(invoke_interrupted(monkeypatch, "step", *args), "no epoch")
    again = hint(line, "start again with: ")
    assert "--force" in again and "--resume" not in again, line
    assert again[again.index("--name") + 1] == "none", line
    assert snapshot(models) == before  # the previous run is still there

    result = invoke(*again)
    assert result.exit_code == 0, (line, result.output)
    assert metrics(models / "none")["config"]["lr"] == 0.05
    assert [p.name for p in models.iterdir()] == ["none"]


# === 7. commands write only what they were asked to ===========================================

MARKERS = (
    "<!-- results-table:start (generated by `regcli report`; do not edit) -->",
    "<!-- results-table:end -->",
)

STUDY_FIGURES = ("model_compare.png", "weights_compare.png", "pruning_compare.png")


@pytest.mark.parametrize(
    "text, with_sweep",
    [
        (None, False),
        ("# no markers here\n", False),
        (f"{MARKERS[1]}\nreversed\n{MARKERS[0]}\n", False),
        (f"{MARKERS[0]}\n{MARKERS[1]}\n{MARKERS[0]}\n", False),
        (f"{MARKERS[0]}\n{MARKERS[1]}\n", True),  # the sweep's path-table markers are missing
    ],
    ids=["missing", "no-markers", "reversed", "twice", "no-path-markers"],
)
def test_report_checks_its_readme_before_any_work(text, with_sweep, exported_tiny, tmp_path):
    model_dir = place(exported_tiny, tmp_path / "models" / "m")
    readme = tmp_path / "README.md"
    if text is not None:
        readme.write_text(text)
    sweep = []
    if with_sweep:
        cell = place(exported_tiny, tmp_path / "models" / "sw" / "l1-0_wd-0" / "seed-0").parent
        sweep = ["--sweep", cell.parent]
    before = snapshot(tmp_path)
    result = invoke("report", model_dir, "--readme", readme, *sweep, *places(tmp_path))
    one_line_error(result, 1, str(readme))
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "images").exists()


def test_report_writes_the_study_figures_and_only_the_readme_given(
    exported_tiny, tmp_path, monkeypatch
):
    models, images = tmp_path / "models", tmp_path / "images"
    model_dir = place(exported_tiny, models / "l2")
    images.mkdir()
    study = {images / name: name.encode() for name in STUDY_FIGURES}
    for path, data in study.items():
        path.write_bytes(data)
    section = f"{MARKERS[0]}\nold table\n{MARKERS[1]}"
    given = tmp_path / "docs" / "RESULTS.md"
    given.parent.mkdir()
    given.write_text(f"# Results\n\n{section}\n\nkept\n")
    bystander = tmp_path / "README.md"  # in the working directory, and not given
    bystander.write_text(f"# Not given\n\n{section}\n")
    monkeypatch.chdir(tmp_path)

    result = invoke("report", model_dir, "--readme", given, *places(tmp_path))
    assert result.exit_code == 0, result.output
    text = given.read_text()
    assert text.startswith(f"# Results\n\n{MARKERS[0]}\n") and text.endswith(
        f"{MARKERS[1]}\n\nkept\n"
    )
    assert "old table" not in text and "| l2 |" in text, text
    assert bystander.read_text() == f"# Not given\n\n{section}\n"
    assert (images / "l2_history.png").is_file() and (images / "l2_misclassified.png").is_file()
    # the fixed names belong to `report` (which `make report` gives the study's models)
    for path in study:
        assert path.read_bytes().startswith(b"\x89PNG"), path
    assert not list(images.glob("*_compare_l2.png"))


def test_a_subset_of_models_gets_its_own_figures(exported_tiny, tmp_path):
    models, images = tmp_path / "models", tmp_path / "images"
    for name in ("l2", "none"):
        place(exported_tiny, models / name)
    images.mkdir()
    study = {images / name: name.encode() for name in STUDY_FIGURES}
    for path, data in study.items():
        path.write_bytes(data)

    for command, figure, extra in (
        ("weights", "weights_compare_l2.png", []),
        ("compare", "model_compare_l2.png", []),
        ("prune", "pruning_compare_l2.png", ["--backend", "onnx", "--sparsity", "0.5"]),
    ):
        options = [*places(tmp_path)[:4], *(["--data-dir", DATA_DIR] if command == "prune" else [])]
        result = invoke(command, models / "l2", *extra, *options)
        assert result.exit_code == 0, (command, result.output)
        assert (images / figure).read_bytes().startswith(b"\x89PNG"), command
        assert f"wrote {images / figure}" in result.stderr, result.stderr

    out = tmp_path / "mine" / "weights.png"
    result = invoke("weights", models / "l2", "--out", out, *places(tmp_path)[:4])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")
    for path, data in study.items():
        assert path.read_bytes() == data, path

    everything = invoke("weights", *places(tmp_path)[:4])  # the default selection: the study's
    assert everything.exit_code == 0, everything.output
    assert (images / "weights_compare.png").read_bytes().startswith(b"\x89PNG")


# === 8. multi-model commands go on past one bad model =========================================


def test_evaluate_onnx_over_all_models_goes_on_past_a_model_without_onnx(exported_tiny, tmp_path):
    models = tmp_path / "models"
    place(exported_tiny, models / "a")
    place(exported_tiny, models / "b", onnx=False)
    place(exported_tiny, models / "c")
    args = ["evaluate", "--backend", "onnx", "--models-dir", models, "--data-dir", DATA_DIR]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"a", "c"} <= rows and "b" not in rows, result.stdout
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith("error: ") and str(models / "b") in error, error
    assert "regcli export" in error, error
    # each row as it finishes: a's row comes before b's error, which comes before c's row
    lines = result.output.splitlines()
    first = lambda word: next(i for i, s in enumerate(lines) if s.split()[:1] == [word])  # noqa: E731
    assert first("a") < lines.index(error) < first("c"), result.output

    listed = json.loads(invoke(*args, "--json").stdout)
    assert [r["model"] for r in listed] == ["a", "c"]


# === 9. regcli runs ===========================================================================


def test_runs_lists_every_folder_with_its_settings_state_and_accuracy(
    exported_tiny, tmp_path, hold
):
    models = tmp_path / "models"
    place(exported_tiny, models / "tiny")
    place(exported_tiny, models / "held")
    seeds = invoke("train", "--name", "grp", "--seeds", "2", *TINY, *places(tmp_path))
    assert seeds.exit_code == 0, seeds.output
    interrupted_run(models, "cut", TrainConfig(epochs=2, limit_train=256, limit_test=128))
    boom = invoke("train", "--name", "boom", "--lr", "1e6", *TINY, *places(tmp_path))
    one_line_error(boom, 1, "diverged")
    holder = hold(models / "held")

    result = invoke("runs", "--models-dir", models, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert sorted(rows) == ["boom", "cut", "grp/seed-0", "grp/seed-1", "held", "tiny"]
    final = metrics(exported_tiny)["epochs"][-1]["test_accuracy"]
    assert rows["tiny"] == {
        "name": "tiny",
        "state": "finished",
        "mode": "l1_l2",
        "l1": 1e-5,
        "weight_decay": 1e-4,
        "seed": TINY_CONFIG.seed,
        "train_images": TINY_CONFIG.train_images,
        "val_images": 0,
        "epochs": 1,
        "of": 1,
        "test_accuracy": final,
        "started": metrics(exported_tiny)["run"]["started"],
        "seconds": metrics(exported_tiny)["run"]["seconds"],
    }
    for k in (0, 1):
        row = rows[f"grp/seed-{k}"]
        assert (row["state"], row["mode"], row["seed"], row["epochs"]) == ("finished", "none", k, 1)
        assert 0 <= row["test_accuracy"] <= 1
    assert (rows["cut"]["state"], rows["cut"]["epochs"], rows["cut"]["of"]) == ("interrupted", 1, 2)
    assert rows["cut"]["test_accuracy"] is None
    assert rows["boom"]["state"] == "diverged" and rows["boom"]["test_accuracy"] is None
    held = rows["held"]["state"]
    assert held.startswith("locked by") and str(holder.pid) in held, held

    table = invoke("runs", "--models-dir", models)
    assert table.exit_code == 0, table.output
    lines = {line.split()[0]: line for line in table.stdout.splitlines()[1:] if line.strip()}
    assert set(lines) == set(rows)
    for name, state in [("tiny", "finished"), ("cut", "interrupted"), ("boom", "diverged")]:
        assert state in lines[name], lines[name]
    assert f"{100 * final:.2f}" in lines["tiny"] and "1/2" in lines["cut"]
    assert "l1_l2" in lines["tiny"] and str(holder.pid) in lines["held"]

    sigkill(holder)  # a killed writer leaves no stale lock behind
    after = json.loads(invoke("runs", "--models-dir", models, "--json").stdout)
    rows = {r["name"]: r for r in after}
    assert rows["held"]["state"] == "finished"
