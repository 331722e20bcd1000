import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from regcli.artifacts import find_models, model_group, readme_markers
from regcli.checkpoints import load_checkpoint, model_from_checkpoint
from regcli.cli import app
from regcli.compare import README_SECTION, results_markdown, seed_summary, summarize
from regcli.inference import evaluate_model
from regcli.regularization import regularized_parameters
from tests.conftest import DATA_DIR, REPO

README_START, README_END = readme_markers(*README_SECTION)
runner = CliRunner()
VARIANTS = {"none", "l1", "l2", "l1_l2"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_summary_numbers_come_from_the_files(quick_model):
    row = summarize(quick_model)
    payload = load_checkpoint(quick_model)
    weights = regularized_parameters(model_from_checkpoint(payload), "weights")
    assert row["weight_l1_norm"] == pytest.approx(
        sum(float(w.detach().abs().sum()) for w in weights)
    )
    small = sum(int((w.abs() < 1e-3).sum()) for w in weights)
    assert row["near_zero_share"] == pytest.approx(100 * small / sum(w.numel() for w in weights))
    assert row["final_test_accuracy"] == pytest.approx(100 * payload["final"]["test_accuracy"])
    assert row["gap"] == pytest.approx(row["final_train_accuracy"] - row["final_test_accuracy"])


def test_compare_cli_draws_every_model_and_prints_a_table(quick_model, tmp_path):
    models = tmp_path / "models"
    for name in ("a", "b", "c"):
        shutil.copytree(quick_model, models / name)
    result = invoke(
        "compare", "--models-dir", models, "--images-dir", tmp_path / "images", "--markdown"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| model | params | l1 | weight decay") and len(lines) == 5
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["a", "b", "c"]
    assert Image.open(tmp_path / "images" / "model_compare.png").size[0] > 800


def test_report_refreshes_only_the_generated_table(quick_model, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(quick_model, models / "quick")
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{README_START}\nold table\n{README_END}\n\nreading\n")
    result = invoke(
        "report",
        "--models-dir",
        models,
        "--images-dir",
        tmp_path / "images",
        "--data-dir",
        DATA_DIR,
        "--readme",
        readme,
    )
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert text.startswith("# intro\n") and text.endswith("\n\nreading\n")
    assert results_markdown([summarize(models / "quick")]) in text and "old table" not in text
    for figure in ("quick_history.png", "quick_misclassified.png", "model_compare.png"):
        assert (tmp_path / "images" / figure).is_file()


committed = pytest.mark.skipif(
    not (REPO / "models" / "l1_l2" / "model.pt").is_file(), reason="no committed study yet"
)


@committed
def test_readme_table_matches_the_committed_models():
    dirs = find_models(REPO / "models")
    assert {model_group(d) for d in dirs} == VARIANTS
    readme = (REPO / "README.md").read_text()
    generated = readme.split(README_START)[1].split(README_END)[0].strip()
    assert generated == results_markdown([summarize(d) for d in dirs])


@committed
def test_committed_models_evaluate_through_onnx_as_recorded(mnist):
    for name in sorted(VARIANTS):
        model_dir = REPO / "models" / name
        summary, _ = evaluate_model(model_dir, "onnx", mnist[1])
        payload = load_checkpoint(model_dir)
        assert payload["epochs"] == 15
        # recorded on the training device; the CPU may differ on a handful of borderline digits
        assert summary["accuracy"] == pytest.approx(payload["final"]["test_accuracy"], abs=5e-4)
        assert (REPO / "images" / f"{name}_history.png").is_file()
        assert (REPO / "images" / f"{name}_misclassified.png").is_file()


def test_seed_groups_of_identical_runs_have_zero_spread(quick_model, tmp_path):
    models = tmp_path / "models"
    for group in ("none", "twin"):
        for seed in range(3):
            shutil.copytree(quick_model, models / group / f"seed-{seed}")
    rows = [summarize(d) for d in find_models(models)]
    summary = {entry["group"]: entry for entry in seed_summary(rows)}
    assert set(summary) == {"none", "twin"} and summary["twin"]["seeds"] == 3
    assert summary["twin"]["std"] == 0 and summary["twin"]["min"] == summary["twin"]["max"]
    assert summary["twin"]["difference"] == 0 and summary["twin"]["half_width"] == 0
    assert summary["twin"]["versus_none"].startswith("within noise (+0.00 +- 0.00")
    assert summary["none"]["versus_none"] == ""  # the baseline is not compared with itself
    result = invoke("compare", "--models-dir", models, "--images-dir", tmp_path / "images")
    assert result.exit_code == 0, result.output
    assert "twin/seed-2" in result.stdout and "within noise" in result.stdout


def test_train_seeds_lays_out_and_reuses(tmp_path):
    args = [
        "train",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--limit-test",
        "128",
        "--models-dir",
        tmp_path / "models",
        "--images-dir",
        tmp_path / "images",
        "--data-dir",
        DATA_DIR,
        "--device",
        "cpu",
        "--quiet",
    ]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    seeds = [load_checkpoint(tmp_path / "models" / "none" / f"seed-{k}")["seed"] for k in (0, 1)]
    assert seeds == [0, 1]
    assert (tmp_path / "images" / "none_seed-1_history.png").is_file()
    before = (tmp_path / "models" / "none" / "seed-0" / "model.pt").read_bytes()
    again = invoke(*args[:2], "3", *args[3:])
    assert again.exit_code == 0, again.output
    assert again.stdout.count("reusing") == 2 and "seed-2" in again.stdout
    assert (tmp_path / "models" / "none" / "seed-0" / "model.pt").read_bytes() == before
