"""The pruning study end to end on a tiny CPU setting: a three-cell path of two seeds, pruned and
retrained one-shot and iteratively by `regcli prune --retrain`, then `regcli report --pruned`:
its README section, table and figure, from numbers that match the runs on disk."""

import json
import re
import shutil
from dataclasses import replace

import pytest

from regcli.core.config import TrainConfig
from regcli.core.files import readme_markers
from regcli.jobs.runs import Request
from tests.conftest import DATA_DIR, invoke, one_line_error, train_cpu

TINY_SOURCE = TrainConfig(epochs=2, limit_train=1024, batch_size=32, limit_test=500)  # ~88%
CELLS = {"l1-0_wd-0": (0.0, 0.0), "l1-0.001_wd-0": (1e-3, 0.0), "l1-0_wd-0.003": (0.0, 3e-3)}
MARKERS = ("results-table", "path-table", "robustness", "pruning-study")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """models/sweep (3 cells x 2 seeds) and models/pruned (each at 80%, one-shot and in 2
    steps), as `make prune-study` makes them."""
    root = tmp_path_factory.mktemp("study")
    models = root / "models"
    requests = [
        Request(replace(TINY_SOURCE, l1=l1, weight_decay=wd, seed=k), f"sweep/{cell}", seeded=True)
        for cell, (l1, wd) in CELLS.items()
        for k in (0, 1)
    ]
    train_cpu(requests, models)
    exported = invoke("export", "--models-dir", models / "sweep", "--data-dir", DATA_DIR, "-q")
    assert exported.exit_code == 0, exported.output  # as the committed sweep is
    sources = [str(models / "sweep" / cell) for cell in CELLS]
    common = ["--sparsity", "0.8", "--retrain", "1", "--models-dir", models, "--device", "cpu"]
    for extra in ([], ["--iterative", "2"]):
        result = invoke("prune", *sources, *common, *extra, "--data-dir", DATA_DIR, "--quiet")
        assert result.exit_code == 0, result.output
    return root


def readme_with_markers(path):
    pairs = [readme_markers(m, "regcli report") for m in MARKERS]
    path.write_text("# r\n\n" + "\n".join(f"{start}\n{end}\n" for start, end in pairs))
    return path


def report(root, readme, pruned):
    models = root / "models"
    return invoke(
        "report", models / "sweep" / "l1-0_wd-0" / "seed-0", "--sweep", models / "sweep",
        "--pruned", pruned, "--readme", readme, "--models-dir", models,
        "--images-dir", root / "images", "--data-dir", DATA_DIR, "--quiet",
    )  # fmt: skip


def section(text: str) -> str:
    return text.split("<!-- pruning-study:start")[1].split("<!-- pruning-study:end")[0]


def test_the_study_is_reported_from_the_runs_on_disk(study, tmp_path):
    readme = readme_with_markers(tmp_path / "README.md")
    result = report(study, readme, study / "models" / "pruned")
    assert result.exit_code == 0, result.output
    text = section(readme.read_text())
    assert (study / "images" / "pruned_study.png").is_file()
    assert "Han et al. (2015)" in text and "Holm-adjusted together" in text
    rows = {  # mode -> the table's cells
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and "80%" in line
    }
    assert set(rows) == {"no retraining", "one-shot", "iterative"}
    dense = [line for line in text.splitlines() if line.startswith("| (dense)")][0]
    assert float(dense.split("|")[3].split("+-")[0]) > 80  # the unregularized sources learned
    # the one-shot none cell is the mean of its two runs' final test accuracies
    finals = []
    for k in (0, 1):
        folder = study / "models/pruned/l1-0_wd-0_prune-0.8_retrain-1" / f"seed-{k}"
        metrics = json.loads((folder / "metrics.json").read_text())
        finals.append(100 * metrics["epochs"][-1]["test_accuracy"])
    mean = float(rows["one-shot"][1].split("+-")[0])
    assert mean == pytest.approx(sum(finals) / 2, abs=0.006)
    # 2 penalties vs none + L1 vs L2, in 3 modes; iterative vs one-shot for 3 cells: 12
    assert "the 12 comparisons" in text
    kb = re.findall(r"zips to ([0-9.]+) KB against ([0-9.]+) KB dense", text)
    assert kb and float(kb[0][0]) < float(kb[0][1])


def test_a_pruned_run_whose_source_is_not_in_the_sweep_is_refused(study, tmp_path):
    pruned = tmp_path / "pruned"
    shutil.copytree(study / "models" / "pruned", pruned)
    stranger = study / "models" / "stranger"  # none's settings but its lr: other weights
    if not stranger.exists():
        train_cpu([Request(replace(TINY_SOURCE, seed=0, lr=0.05), "stranger")], study / "models")
    args = ["--sparsity", "0.8", "--retrain", "1", "--name", "x", "--models-dir", tmp_path]
    result = invoke("prune", stranger, *args, "--data-dir", DATA_DIR, "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    cell = "l1-0_wd-0_prune-0.8_retrain-1"
    shutil.rmtree(pruned / cell / "seed-0")
    shutil.move(tmp_path / "x" / cell / "seed-0", pruned / cell / "seed-0")
    readme = readme_with_markers(tmp_path / "README.md")
    before = readme.read_text()
    result = report(study, readme, pruned)
    one_line_error(result, 1, "not among the sweep's models")
    assert readme.read_text() == before


def test_a_cell_with_one_seed_is_reported_not_a_crash(study, tmp_path):
    """One seed cannot give an interval: said in its table cell, the rest still paired."""
    pruned = tmp_path / "pruned"
    shutil.copytree(study / "models" / "pruned", pruned)
    shutil.rmtree(pruned / "l1-0.001_wd-0_prune-0.8_retrain-1" / "seed-1")
    readme = readme_with_markers(tmp_path / "README.md")
    result = report(study, readme, pruned)
    assert result.exit_code == 0, result.output
    text = section(readme.read_text())
    assert "(too few seeds)" in text and "could not be made: fewer than two seeds" in text
