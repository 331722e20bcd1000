"""`regcli sweep` on a tiny grid (256 images, 1 epoch, 2 strengths x 2 seeds, CPU): layout, reuse,
the mismatch error, resume after an interrupt, divergence as a result, and the path's numbers."""

import json
import signal
import subprocess
import sys
import time

import pytest

from regcli.core.config import TrainConfig
from regcli.core.errors import UsageError
from regcli.jobs.sweep import grid_cells, parse_strengths
from regcli.store.checkpoints import load_model
from regcli.store.layout import LAST_NAME, cell_name, parse_cell
from regcli.store.records import load_metrics
from regcli.studies.path import (
    PATH_SPARSITIES,
    PathCell,
    Penalty,
    cells_json,
    path_stats,
    path_table,
)
from regcli.studies.stats import holm_adjusted, mean, paired
from regcli.studies.weights import prune_curve, weight_stats
from tests.conftest import DATA_DIR, REPO, invoke, one_line_error, snapshot

GRID = [
    "--l1",
    "0,1e-3",
    "--weight-decay",
    "1e-2",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--limit-train",
    "256",
    "--limit-test",
    "128",
    "--device",
    "cpu",
    "--data-dir",
    DATA_DIR,
]
CELLS = ["l1-0_wd-0", "l1-0.001_wd-0", "l1-0_wd-0.01"]


def sweep(tmp_path, *extra):
    return invoke(
        "sweep",
        *GRID,
        "--models-dir",
        tmp_path / "models",
        "--images-dir",
        tmp_path / "images",
        *extra,
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("swept")
    result = sweep(root)
    assert result.exit_code == 0, result.output
    return root


def test_cells_are_ordinary_model_folders_named_by_their_strengths(swept):
    folder = swept / "models" / "sweep"
    assert sorted(p.name for p in folder.iterdir()) == sorted(CELLS)
    for cell in CELLS:
        l1, weight_decay = parse_cell(cell)
        for seed in (0, 1):
            model_dir = folder / cell / f"seed-{seed}"
            metrics = load_metrics(model_dir)
            config = TrainConfig.from_dict(metrics["config"])
            assert (config.l1, config.weight_decay, config.seed) == (l1, weight_decay, seed)
            assert (model_dir / "model.pt").is_file() and metrics["status"] == "finished"
    assert not (swept / "images").exists()  # no per-model figures from a sweep


def test_the_same_sweep_again_reuses_every_cell_and_changes_nothing(swept):
    before = snapshot(swept / "models")
    result = sweep(swept)
    assert result.exit_code == 0, result.output
    assert "0 trained, 0 resumed, 6 reused" in result.stderr
    assert snapshot(swept / "models") == before
    plan = json.loads(sweep(swept, "--dry-run", "--json").stdout)
    assert (plan["reuse"], plan["train"], plan["models"]) == (6, 0, 6)


def test_a_cell_with_other_settings_is_an_error_naming_the_difference(swept):
    before = snapshot(swept / "models")
    line = one_line_error(sweep(swept, "--lr", "0.05"), 2, "lr 0.1 (asked 0.05)")
    assert "seed-0" in line and "--force" in line
    assert snapshot(swept / "models") == before


def test_dry_run_counts_and_estimates_without_writing(tmp_path):
    result = sweep(tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "3 cells x 2 seeds = 6 models: 0 reused, 0 resumed, 6 to train" in result.stdout
    assert not (tmp_path / "models").exists()


def test_an_interrupted_sweep_continues_with_the_same_command(tmp_path):
    grid = [str(a) for a in GRID]
    grid[grid.index("--epochs") + 1] = "3"
    command = [
        sys.executable,
        "-m",
        "regcli",
        "sweep",
        *grid,
        "--models-dir",
        str(tmp_path / "models"),
    ]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    last = tmp_path / "models" / "sweep" / CELLS[0] / "seed-0" / LAST_NAME
    deadline = time.monotonic() + 60
    while not last.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "continue with: regcli sweep" in stderr
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resuming {last.parent}" in again.stderr
    straight = subprocess.run(
        [*command[:-1], str(tmp_path / "straight")], cwd=REPO, capture_output=True, text=True
    )
    assert straight.returncode == 0
    for cell in CELLS:
        for seed in ("seed-0", "seed-1"):
            ours = load_metrics(tmp_path / "models" / "sweep" / cell / seed)["epochs"]
            theirs = load_metrics(tmp_path / "straight" / "sweep" / cell / seed)["epochs"]
            strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
            assert strip(ours) == strip(theirs)


def test_a_diverging_sweep_records_its_cells_and_exits_0(tmp_path):
    result = sweep(tmp_path, "--lr", "1e5")
    assert result.exit_code == 0, result.output
    assert "6 diverged (recorded as results)" in result.stderr
    report = invoke(
        "sweep",
        "--models-dir",
        tmp_path / "models",
        "--images-dir",
        tmp_path / "images",
        "--report",
        "--json",
        "--data-dir",
        DATA_DIR,
    )
    assert report.exit_code == 0, report.output
    cells = json.loads(report.stdout)
    assert all(c["diverged"] == 2 and c["accuracy"] is None for c in cells)
    assert (tmp_path / "images" / "sweep_path.png").stat().st_size > 10_000


def path_report(swept, *extra):
    """`regcli sweep --report` on the swept fixture's models."""
    folders = ["--models-dir", swept / "models", "--images-dir", swept / "images"]
    return invoke("sweep", *folders, "--report", *extra, "--data-dir", DATA_DIR)


def test_the_path_report_is_computed_from_the_models(swept, mnist):
    result = path_report(swept, "--json")
    assert result.exit_code == 0, result.output
    cells = {c["cell"]: c for c in json.loads(result.stdout)}
    assert set(cells) == set(CELLS)
    test = mnist[1].head(128)
    finals = {}
    for name, cell in cells.items():
        folders = [swept / "models" / "sweep" / name / f"seed-{k}" for k in (0, 1)]
        accuracies = [100 * load_metrics(f)["epochs"][-1]["test_accuracy"] for f in folders]
        finals[name] = accuracies
        assert cell["accuracy"] == pytest.approx(mean(accuracies))
        shares = [100 * weight_stats(load_model(f)[0])["below_0.001"] for f in folders]
        assert cell["near_zero_share"] == pytest.approx(mean(shares))
        norms = [weight_stats(load_model(f)[0])["l1_norm"] for f in folders]
        assert cell["l1_norm"] == pytest.approx(mean(norms))
        curves = [
            prune_curve(f, list(PATH_SPARSITIES), backend="torch", test=test) for f in folders
        ]
        for i, level in enumerate(PATH_SPARSITIES):
            pruned = mean([100 * c["points"][i]["accuracy"] for c in curves])
            assert cell["pruned"][repr(level)] == pytest.approx(pruned)
    # seed k against seed k of none, the two comparisons Holm-adjusted together
    expected = holm_adjusted([paired(finals[name], finals[CELLS[0]]) for name in CELLS[1:]])
    for name, difference in zip(CELLS[1:], expected, strict=True):
        assert cells[name]["versus_none"] == difference.verdict()
    for figure in ("sweep_path.png", "sweep_pruning.png"):
        assert (swept / "images" / figure).stat().st_size > 20_000
    table = path_report(swept)
    header, *rows = table.stdout.strip().splitlines()
    assert header.startswith("cell") and "acc % at 90% zeroed" in header and len(rows) == 3


def test_strengths_parse_and_cells_read_back():
    assert parse_strengths("0, 1e-5,1e-4", "--l1") == [0.0, 1e-5, 1e-4]
    assert parse_strengths("1e-6:1e-3:4", "--l1") == [1e-6, 1e-5, 1e-4, 1e-3]
    assert parse_strengths("1e-6:1e-3:7", "--l1")[1] == 3.16e-06
    for bad in ("x", "-1e-5", "1e-3:1e-6:3", "nan", "inf", ""):
        with pytest.raises(UsageError):
            parse_strengths(bad, "--l1")
    for l1, weight_decay in [(0.0, 0.0), (3e-05, 0.0), (0.001, 0.003), (1.234567e-7, 2.5)]:
        assert parse_cell(cell_name(l1, weight_decay)) == (l1, weight_decay)
    assert cell_name(3e-05, 0.0) == "l1-3e-05_wd-0"
    assert parse_cell("notes") is None


def test_grids_share_the_unregularized_cell():
    assert grid_cells([1e-5], [1e-4], "paths") == [(0.0, 0.0), (1e-5, 0.0), (0.0, 1e-4)]
    product = grid_cells([0.0, 1e-5], [1e-4], "product")
    assert sorted(product) == sorted([(0.0, 0.0), (1e-5, 0.0), (0.0, 1e-4), (1e-5, 1e-4)])


def test_a_cell_without_a_model_in_json_and_in_the_table():
    assert [Penalty.of(*s) for s in ((0, 0), (1e-3, 0), (0, 1e-2), (1e-3, 1e-2))] == [
        "none",
        "l1",
        "l2",
        "both",
    ]
    cell = PathCell("l1-0.001_wd-0", 1e-3, 0.0, Penalty.L1, 1e-3, 2, 1, 2, 0, epochs=1)
    (plain,) = cells_json([cell])
    assert list(plain) == [
        *("cell", "l1", "weight_decay", "path", "strength", "seeds", "unfinished", "diverged"),
        *("missing", "epochs", "accuracy"),
    ]
    assert plain["path"] == "l1" and type(plain["path"]) is str and plain["accuracy"] is None
    _, _, row = path_table([cell], markdown=True).splitlines()
    assert [text.strip() for text in row.split("|")[1:-1]] == [
        *("l1-0.001_wd-0", "0.001", "0", "2 (2 diverged, 1 unfinished)", "diverged"),
        *["-"] * (3 + len(PATH_SPARSITIES)),
    ]


def test_path_stats_refuse_a_cell_that_mixes_configurations(swept, tmp_path, mnist):
    import shutil

    from regcli.core.errors import RegcliError

    models = tmp_path / "sweep"
    shutil.copytree(swept / "models" / "sweep", models)
    shutil.rmtree(models / CELLS[1] / "seed-1")
    shutil.copytree(models / CELLS[0] / "seed-1", models / CELLS[1] / "seed-1")  # l1 0, not 1e-3
    with pytest.raises(RegcliError, match="mixes configurations"):
        path_stats(models, mnist[1])
    shutil.rmtree(models / CELLS[1])
    shutil.copytree(models / CELLS[0], models / CELLS[1])  # both seeds agree, with the wrong l1
    with pytest.raises(RegcliError, match="its name says l1 0.001"):
        path_stats(models, mnist[1])


def test_a_sweep_config_file_repeats_the_grid_and_the_settings(tmp_path):
    printed = invoke(
        "sweep",
        "--l1",
        "0,1e-4",
        "--weight-decay",
        "1e-3",
        "--seeds",
        "3",
        "--epochs",
        "2",
        "--dropout",
        "0.1",
        "--print-config",
    )
    assert printed.exit_code == 0, printed.output
    assert "[sweep]" in printed.stdout and "l1 = [0.0, 0.0001]" in printed.stdout
    config = tmp_path / "sweep.toml"
    config.write_text(printed.stdout)
    assert invoke("sweep", "--config", config, "--print-config").stdout == printed.stdout
    plan = json.loads(
        invoke("sweep", "--config", config, "--dry-run", "--json", "--models-dir", tmp_path).stdout
    )
    assert [c["cell"] for c in plan["cells"]] == ["l1-0_wd-0", "l1-0.0001_wd-0", "l1-0_wd-0.001"]
    assert plan["models"] == 9 and plan["train"] == 9
    config.write_text(printed.stdout + "grids = 1\n")
    one_line_error(invoke("sweep", "--config", config, "--dry-run"), 2, "unknown setting 'grids'")
