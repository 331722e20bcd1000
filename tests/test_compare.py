"""compare and report: numbers from the files, figures of every model, seed groups against the
unregularized group, README sections touched only when asked."""

import json
import shutil
from dataclasses import replace

import pytest
from PIL import Image

from regcli.core.files import readme_markers
from regcli.data.mnist import load_split
from regcli.inference.backends import is_current
from regcli.inference.evaluate import evaluate_model
from regcli.nn.model import regularized_parameters
from regcli.store.checkpoints import load_checkpoint, model_from_checkpoint
from regcli.store.layout import seed_dirs
from regcli.store.listing import find_models
from regcli.studies.compare import (
    README_SECTION,
    as_json,
    results_markdown,
    seed_summary,
    series,
    summarize,
)
from tests.conftest import (
    DATA_DIR,
    REPO,
    TINY,
    copy_model,
    invoke,
    one_line_error,
    places,
    relabel,
    snapshot,
)

README_START, README_END = readme_markers(*README_SECTION)
VARIANTS = ("none", "l1", "l2", "l1_l2")


def study_models():
    """The four-variant study as `make report` names it: each variant and its seeds."""
    return [d for v in VARIANTS for d in (REPO / "models" / v, *seed_dirs(REPO / "models" / v))]


def test_summary_numbers_come_from_the_files(quick_model):
    row = summarize(quick_model)
    payload = load_checkpoint(quick_model)
    weights = regularized_parameters(model_from_checkpoint(payload), "weights")
    assert row.weight_l1_norm == pytest.approx(sum(float(w.detach().abs().sum()) for w in weights))
    small = sum(int((w.abs() < 1e-3).sum()) for w in weights)
    assert row.near_zero_share == pytest.approx(100 * small / sum(w.numel() for w in weights))
    assert row.final_test_accuracy == pytest.approx(100 * payload["final"]["test_accuracy"])
    assert row.gap == pytest.approx(row.final_train_accuracy - row.final_test_accuracy)


def test_compare_cli_draws_every_model_and_prints_tables(quick_model, tmp_path):
    models = tmp_path / "models"
    for name in ("a", "b", "c"):
        copy_model(quick_model, models, name)
    result = invoke(
        "compare", "--models-dir", models, "--images-dir", tmp_path / "images", "--markdown"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| model | params | l1 | weight decay") and len(lines) == 5
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["a", "b", "c"]
    assert Image.open(tmp_path / "images" / "model_compare.png").size[0] > 800
    assert result.stderr.strip() == f"wrote {tmp_path / 'images' / 'model_compare.png'}"
    data = json.loads(
        invoke(
            "compare",
            "--models-dir",
            models,
            "--images-dir",
            tmp_path / "images",
            "--json",
            "--quiet",
        ).stdout
    )
    assert [m["model"] for m in data["models"]] == ["a", "b", "c"] and data["seed_groups"] == []


def test_report_touches_a_readme_only_when_given_one(quick_model, tmp_path, monkeypatch):
    models = tmp_path / "models"
    copy_model(quick_model, models)
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{README_START}\nold table\n{README_END}\n\nreading\n")
    monkeypatch.chdir(tmp_path)  # a README.md in the working folder is not for report to touch
    options = ["--models-dir", models, "--images-dir", tmp_path / "images", "--data-dir", DATA_DIR]
    assert invoke("report", *options, "--quiet").exit_code == 0
    assert "old table" in readme.read_text()
    result = invoke("report", *options, "--readme", readme)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert text.startswith("# intro\n") and text.endswith("\n\nreading\n")
    assert results_markdown([summarize(models / "quick")]) in text and "old table" not in text
    for figure in (
        "quick_history.png",
        "quick_misclassified.png",
        "model_compare.png",
        "weights_compare.png",
        "pruning_compare.png",
    ):
        assert (tmp_path / "images" / figure).is_file()


def test_report_checks_the_readme_before_any_work(quick_model, tmp_path):
    models = tmp_path / "models"
    copy_model(quick_model, models)
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_END}\nold\n{README_START}\n")  # markers out of order
    before = snapshot(tmp_path)
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
    one_line_error(result, 1, "markers are out of order")
    assert snapshot(tmp_path) == before and not (tmp_path / "images").exists()


def test_seed_groups_are_compared_with_the_unregularized_group(tiny_group, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_group, models / "grp")
    none = models / "none"
    for k in (0, 1):  # the same runs relabelled as unregularized: a real group of its own
        shutil.copytree(tiny_group / f"seed-{k}", none / f"seed-{k}")
        relabel(none / f"seed-{k}", l1=0.0, weight_decay=0.0)
    rows = [summarize(d) for d in find_models(models)]
    summary = {entry.group: entry for entry in seed_summary(rows)}
    assert set(summary) == {"none", "grp"} and summary["grp"].accuracy.n == 2
    assert summary["grp"].versus_none.estimate == 0  # the same runs: no difference of the means
    assert summary["grp"].versus_none.verdict().startswith("within noise (+0.00 +- ")
    assert summary["none"].versus_none is None  # the baseline is not compared with itself
    plain = {entry["group"]: entry for entry in as_json(rows)["seed_groups"]}
    assert plain["grp"]["difference"] == 0 and plain["grp"]["seeds"] == 2
    assert plain["none"]["versus_none"] == "" and "difference" not in plain["none"]
    result = invoke("compare", "--models-dir", models, "--images-dir", tmp_path / "images")
    assert result.exit_code == 0, result.output
    assert "grp/seed-1" in result.stdout and "within noise" in result.stdout


def test_a_model_far_below_the_rest_still_shows_in_the_figure(quick_model, tmp_path):
    rows = [summarize(quick_model)]
    weak = replace(
        rows[0],
        model="weak",
        group="weak",
        history=[{**r, "test_accuracy": 0.5} for r in rows[0].history],
    )
    drawn = series([*rows, weak])
    assert [s.accuracy.mean[-1] for s in drawn] == [
        100 * rows[0].history[-1]["test_accuracy"],
        50.0,
    ]
    from regcli.plots.figures import compare_figure

    axes = compare_figure(drawn).axes[0]
    low, high = axes.get_ylim()
    assert low <= 50 < high and low < high


# --- the committed study ----------------------------------------------------------------------

committed = pytest.mark.skipif(
    not (REPO / "models" / "l1_l2" / "model.pt").is_file(), reason="no committed study yet"
)


@committed
def test_readme_table_matches_the_committed_models():
    """The tables, and the sentences above them that say how the models were trained."""
    from regcli.store.layout import unique_labels
    from regcli.studies.variants_report import results_section

    readme = (REPO / "README.md").read_text()
    generated = readme.split(README_START)[1].split(README_END)[0].strip()
    dirs = study_models()
    labels = unique_labels(dirs, REPO / "models")
    assert generated == results_section([summarize(d, labels[d]) for d in dirs], dirs)
    assert "4 single runs (seed 1) and 4 seed groups (seeds 0-4), 15 epochs each" in generated


@committed
def test_readme_path_and_robustness_sections_match_the_committed_sweep():
    from regcli.studies import path as paths
    from regcli.studies.path_report import path_section
    from regcli.studies.shift import README_SECTION as ROBUSTNESS_SECTION
    from regcli.studies.shift import ROBUSTNESS_SHIFTS, robustness_section

    start, end = readme_markers(*paths.README_SECTION)
    readme = (REPO / "README.md").read_text()
    generated = readme.split(start)[1].split(end)[0].strip()
    sweep = REPO / "models" / "sweep"
    test = load_split(DATA_DIR, "test")
    cells = paths.path_stats(sweep, test, shifts=ROBUSTNESS_SHIFTS)  # pruning, shifts: cached
    assert generated == path_section(cells, sweep).strip()
    assert len(cells) == 14 and all(c.seeds == 5 and c.epochs == 15 for c in cells)
    start, end = readme_markers(*ROBUSTNESS_SECTION)
    generated = readme.split(start)[1].split(end)[0].strip()
    assert generated == robustness_section(cells, "images/sweep_robustness.png").strip()
    assert all(set(c.shifted) == set(ROBUSTNESS_SHIFTS) for c in cells)


@pytest.mark.skipif(not (REPO / "models" / "atlas").is_dir(), reason="no committed atlas yet")
def test_readme_atlas_section_matches_the_committed_atlas():
    """The section, its training time included, is what the committed atlas and path say."""
    from regcli.studies.atlas import read_atlas
    from regcli.studies.atlas_report import README_SECTION as ATLAS_SECTION
    from regcli.studies.atlas_report import atlas_section

    start, end = readme_markers(*ATLAS_SECTION)
    readme = (REPO / "README.md").read_text()
    generated = readme.split(start)[1].split(end)[0].strip()
    atlas = read_atlas(REPO / "models" / "atlas", join=REPO / "models" / "sweep")
    figures = ["images/atlas_gain.png", "images/atlas_gap.png"]
    assert generated == atlas_section(atlas, figures).strip()
    assert all((REPO / f).is_file() for f in figures)
    assert atlas.sizes[-1] == 60_000 and len(atlas.sizes) >= 4
    assert all(c.seeds == 5 for c in atlas.cells)


@pytest.mark.skipif(not (REPO / "models" / "pruned").is_dir(), reason="no pruning study yet")
def test_readme_pruning_section_matches_the_committed_pruned_runs():
    """The section, run time included, is what the committed pruned runs and their sources
    say; the study is the one `make prune-study` makes: 3 cells x 5 seeds x 3 levels, two ways."""
    from regcli.studies.pruning import Mode, read_study
    from regcli.studies.pruning_report import README_SECTION as PRUNING_SECTION
    from regcli.studies.pruning_report import section

    start, end = readme_markers(*PRUNING_SECTION)
    readme = (REPO / "README.md").read_text()
    generated = readme.split(start)[1].split(end)[0].strip()
    test = load_split(DATA_DIR, "test")
    study = read_study(REPO / "models" / "pruned", REPO / "models" / "sweep", test)
    assert generated == section(study, "images/pruned_study.png").strip()
    assert (REPO / "images" / "pruned_study.png").is_file()
    assert len(study.folders) == 90 and set(study.retraining) == {Mode.one_shot, Mode.iterative}
    assert all(p.accuracy.n == 5 for p in study.points)


@committed
def test_committed_models_evaluate_through_onnx_as_recorded(mnist):
    for name in VARIANTS:
        model_dir = REPO / "models" / name
        summary, _ = evaluate_model(model_dir, backend="onnx", test=mnist[1])
        payload = load_checkpoint(model_dir)
        assert payload["epochs"] == 15
        # recorded on the training device; the CPU may differ on a handful of borderline digits
        assert summary["accuracy"] == pytest.approx(payload["final"]["test_accuracy"], abs=5e-4)
        assert (REPO / "images" / f"{name}_history.png").is_file()
        assert (REPO / "images" / f"{name}_misclassified.png").is_file()


@committed
def test_every_committed_model_has_its_current_onnx_export():
    models = find_models(REPO / "models")
    assert len(models) >= 94  # 4 variants, 20 seeds, 70 sweep models
    stale = [str(d) for d in models if not is_current(d)]
    assert stale == []


@committed
def test_seed_1_of_the_committed_seeds_is_the_single_run():
    """The README says seed 1 reproduced the single run exactly (the same seed and device)."""
    for name in VARIANTS:
        single = load_checkpoint(REPO / "models" / name)
        seed = load_checkpoint(REPO / "models" / name / "seed-1")
        assert single["final"] == seed["final"]
        assert all(single["state_dict"][k].equal(v) for k, v in seed["state_dict"].items())


def test_compare_warns_when_runs_saw_other_data(tmp_path):
    """Runs trained or tested on other images are compared, with a warning naming how."""
    for name, limit in (("a", "128"), ("b", "64")):
        trained = invoke("train", "--name", name, *TINY, "--limit-test", limit, *places(tmp_path))
        assert trained.exit_code == 0, trained.output
    models = [str(tmp_path / "models" / name) for name in ("a", "b")]
    result = invoke("compare", *models, "--out", str(tmp_path / "c.png"))
    assert result.exit_code == 0, result.output
    assert "warning: these runs differ in the data" in result.stderr
    assert "limit_test: 128 (a); 64 (b)" in result.stderr
    same = invoke("compare", models[0], "--out", str(tmp_path / "d.png"), "--json")
    assert json.loads(same.stdout)["data_differences"] is None and "warning" not in same.stderr


def test_the_studys_sentences_come_from_its_runs(tiny_group, tmp_path):
    """A rerun of the study on this CPU with 1 epoch: the sentences above the results tables
    say 1 epoch, this machine and no GPU, and whether seed 0 reproduced the single run, which
    they check against the records (first a true copy, then a run that differs)."""
    from regcli.core.provenance import machine
    from regcli.store.layout import unique_labels
    from regcli.studies.compare import summarize
    from regcli.studies.variants_report import study_lines

    group = tmp_path / "models" / "grp"
    shutil.copytree(tiny_group, group)
    for name in ("model.pt", "metrics.json"):  # the single run: seed 0's own files
        shutil.copy(group / "seed-0" / name, group / name)
    dirs = [group, group / "seed-0", group / "seed-1"]
    labels = unique_labels(dirs, tmp_path / "models")

    def lines():
        return study_lines([summarize(d, labels[d]) for d in dirs], dirs)

    text = "\n".join(lines())
    assert text.startswith("- 1 single run (seed 0) and 1 seed group (seeds 0-1), 1 epoch each")
    assert f"The 3 models trained on {machine('cpu')['cpu']}" in text
    assert "NVIDIA" not in text and "15 epochs" not in text
    assert "seed 0 reproduced the single run exactly (the same epoch records) for grp." in text
    metrics = json.loads((group / "metrics.json").read_text())
    metrics["epochs"][-1]["train_loss"] *= 1 + 1e-12  # another order of a sum, say
    (group / "metrics.json").write_text(json.dumps(metrics))
    assert "to within 1e-09 (relative) in every number of every epoch, though not" in lines()[-1]
    metrics["epochs"][-1]["test_accuracy"] -= 0.01
    (group / "metrics.json").write_text(json.dumps(metrics))
    assert "seed 0 did not reproduce the single run for grp (final test accuracy" in lines()[-1]
