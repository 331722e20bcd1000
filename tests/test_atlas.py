"""The atlas: class-balanced training subsets and validation splits, the fair-length rule, the
recommendation on validation accuracy only, and a tiny atlas trained, reported and re-checked
with permuted test labels."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from regcli.core.config import TrainConfig
from regcli.core.errors import RegcliWarning, UsageError
from regcli.core.files import readme_markers
from regcli.data.mnist import balanced_counts, subsets
from regcli.studies.atlas import AtlasCell, read_atlas, recommend
from regcli.studies.atlas_report import atlas_section, findings
from regcli.studies.path import Penalty
from regcli.studies.stats import seed_stats
from regcli.train.trainer import GroupTrainer
from tests.conftest import invoke, one_line_error, snapshot

# --- the subset rule --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labels(mnist):
    return mnist[0].labels


def test_subsets_are_deterministic_class_balanced_nested_and_disjoint(labels):
    train, val = subsets(labels, 3, 1000, 500)
    again_train, again_val = subsets(labels, 3, 1000, 500)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert np.bincount(labels[train], minlength=10).tolist() == [100] * 10
    assert np.bincount(labels[val], minlength=10).tolist() == [50] * 10
    assert not set(train) & set(val)  # never an image in both
    larger, same_val = subsets(labels, 3, 2000, 500)
    assert set(train) <= set(larger) and np.array_equal(val, same_val)  # nested; val fixed
    other, _ = subsets(labels, 4, 1000, 500)
    assert len(set(train) & set(other)) < 100  # another seed, other images
    rest, held = subsets(labels, 3, None, 500)  # every image the split leaves
    assert len(rest) == len(labels) - 500 and not set(rest) & set(held)
    whole, none = subsets(labels, 3, None, 0)
    assert np.array_equal(whole, np.arange(len(labels))) and len(none) == 0  # as before


def test_balanced_counts_spread_the_rest_over_the_first_digits():
    assert balanced_counts(1003) == [101, 101, 101] + [100] * 7
    assert sum(balanced_counts(7)) == 7


def test_the_cells_of_one_seed_share_their_subset_and_split(mnist):
    """Members of a group with different strengths and the same seed train on the same images;
    every pass of an epoch is a permutation of exactly that subset."""
    base = TrainConfig(epochs=2, train_size=200, val_size=100, min_steps=12, limit_test=64)
    configs = [base, replace(base, l1=1e-3), replace(base, seed=2)]
    trainer = GroupTrainer(configs, *mnist, torch.device("cpu"))
    assert torch.equal(trainer.subset[0], trainer.subset[1])
    assert not torch.equal(trainer.subset[0], trainer.subset[2])
    assert torch.equal(trainer.val_index[0], trainer.val_index[1])
    assert trainer.passes == 3 and trainer.steps_per_epoch == 6  # 2 steps a pass, 12 in all
    trainer.draw_epoch(1)
    slots = trainer.pass_steps * trainer.batch_size
    for number in range(trainer.passes):
        drawn = trainer.order[0, number * slots : number * slots + 200]
        assert sorted(drawn.tolist()) == sorted(trainer.subset[0].tolist())


# --- the fair-length rule and the settings ----------------------------------------------------


def test_the_fair_length_rule_takes_the_fewest_whole_passes_that_reach_min_steps():
    small = TrainConfig(train_size=1000, epochs=5, min_steps=600)
    assert small.passes_per_epoch == 15 and small.epochs * small.steps_per_epoch == 600
    odd = TrainConfig(train_size=2000, epochs=5, min_steps=600)
    assert odd.passes_per_epoch == 8 and odd.epochs * odd.steps_per_epoch == 640
    assert TrainConfig().passes_per_epoch == 1  # no --min-steps: one pass an epoch
    assert TrainConfig(min_steps=600).passes_per_epoch == 1  # 60,000 images reach it anyway
    assert "5 epochs = 600 steps" in small.length_text


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"train_size": 100, "limit_train": 500}, "give one"),
        ({"val_size": 60_000}, "--val-size must be in 0..59999"),
        ({"train_size": 54_000, "val_size": 1000}, "at most 53,210"),
        ({"min_steps": -1}, "--min-steps"),
    ],
)
def test_bad_sizes_are_refused_with_the_reason(settings, words):
    with pytest.raises(UsageError, match=words):
        TrainConfig(**settings)


def test_all_the_images_is_one_configuration():
    assert TrainConfig(train_size=60_000).train_size is None
    assert TrainConfig(train_size=59_000, val_size=1000) == TrainConfig(val_size=1000)


def test_the_dry_run_shows_every_cells_length_and_bad_sizes_fail_cleanly(tmp_path):
    common = ["--models-dir", str(tmp_path), "--l1", "1e-3", "--weight-decay", "0", "--seeds", "1"]
    sizes = ("--train-sizes", "500,1000", "--min-steps", "600", "--epochs", "5")
    result = invoke("sweep", *common, *sizes, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    lengths = {
        c["cell"]: (c["train_images"], c["passes_per_epoch"], c["steps"]) for c in plan["cells"]
    }
    assert lengths["size-500/l1-0_wd-0"] == (500, 30, 600)
    assert lengths["size-1000/l1-0.001_wd-0"] == (1000, 15, 600)
    for bad in ("0,500", "five", "500,1e3"):
        one_line_error(
            invoke("sweep", *common, "--train-sizes", bad, "--dry-run"), 2, "--train-sizes"
        )
    assert not list(tmp_path.iterdir())


# --- the choice on validation, never on test --------------------------------------------------


def cell(size, penalty, strength, val, test, seeds=(0, 1, 2)):
    return AtlasCell(
        size=size,
        cell=f"{penalty.value}-{strength}",
        penalty=penalty,
        strength=strength,
        seeds=len(seeds),
        diverged=0,
        test=seed_stats(test, seeds=list(seeds)),
        val=seed_stats(val, seeds=list(seeds)),
    )


def test_the_recommendation_reads_validation_only():
    cells = [
        cell(500, Penalty.NONE, 0.0, [90, 90.2, 89.8], [91, 91, 91]),
        cell(500, Penalty.L2, 1e-3, [91, 91.2, 90.8], [92, 92, 92]),
        cell(500, Penalty.L2, 1e-2, [90.9, 91.1, 90.7], [85, 85, 85]),  # within 1 SE: chosen
        cell(500, Penalty.L2, 1e-1, [80, 80, 80], [99, 99, 99]),
    ]
    chosen = recommend(cells)
    assert [(r.penalty, r.strength) for r in chosen] == [(Penalty.L2, 1e-2)]
    scrambled = [replace(c, test=seed_stats([50, 60, 70], seeds=[0, 1, 2])) for c in cells]
    assert [r.strength for r in recommend(scrambled)] == [1e-2]


# --- a tiny atlas, end to end -------------------------------------------------------------------

TINY_ATLAS = [
    *("--train-sizes", "200,400", "--l1", "1e-3", "--weight-decay", "1e-2", "--seeds", "2"),
    *("--epochs", "1", "--batch-size", "64", "--min-steps", "30", "--val-size", "100"),
    *("--limit-test", "500", "--device", "cpu", "--name", "atlas"),
]


@pytest.fixture(scope="module")
def tiny_atlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    result = invoke("sweep", *TINY_ATLAS, "--models-dir", str(root), "--quiet")
    assert result.exit_code == 0, result.output
    return root


def test_a_tiny_atlas_trains_pairs_its_seeds_and_chooses_on_validation(tiny_atlas, tmp_path):
    sweep = tiny_atlas / "atlas"
    assert sorted(p.name for p in sweep.iterdir()) == ["size-200", "size-400"]
    metrics = json.loads((sweep / "size-400" / "l1-0_wd-0" / "seed-1" / "metrics.json").read_text())
    last = metrics["epochs"][-1]
    assert last["test_accuracy"] > 0.5  # 30 steps on 400 images: far above chance (0.1)
    assert 0 < last["val_accuracy"] <= 1 and 0 < last["clean_train_accuracy"] <= 1
    atlas = read_atlas(sweep)
    assert atlas.sizes == [200, 400] and len(atlas.cells) == 6
    compared = [c.versus_none for c in atlas.cells if c.versus_none is not None]
    assert len(compared) == 4 and {d.method for d in compared} == {"paired"}
    assert all(d.adjusted_p is not None and d.adjusted_p >= d.p for d in compared)
    assert len(atlas.recommendations) == 4
    said = findings(atlas, None)
    assert any("Holm-adjusted together" in s for s in said)
    assert sum("Chosen on the validation split" in s for s in said) == 2
    result = invoke(
        "sweep",
        "--name",
        "atlas",
        "--models-dir",
        str(tiny_atlas),
        "--report",
        "--json",
        "--images-dir",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["recommended"]) == 4
    assert (tmp_path / "atlas_gain.png").is_file() and (tmp_path / "atlas_gap.png").is_file()


def test_permuting_the_test_labels_leaves_the_recommendation_alone(tiny_atlas, mnist, tmp_path):
    """Re-score every model's test accuracy against permuted test labels: the test numbers
    change, the strengths chosen do not."""
    import shutil

    from regcli.inference.evaluate import evaluate_model

    sweep = tmp_path / "atlas"
    shutil.copytree(tiny_atlas / "atlas", sweep)
    before = read_atlas(sweep)
    test = mnist[1].head(500)
    permuted = replace(test, labels=np.random.default_rng(0).permutation(test.labels))
    for path in sweep.glob("*/*/seed-*/metrics.json"):
        summary, _ = evaluate_model(path.parent, backend="torch", test=permuted)
        metrics = json.loads(path.read_text())
        metrics["epochs"][-1]["test_accuracy"] = summary["accuracy"]
        path.write_text(json.dumps(metrics))
    after = read_atlas(sweep)
    assert [c.test.mean for c in after.cells] != [c.test.mean for c in before.cells]
    assert max(c.test.mean for c in after.cells) < 30  # permuted labels: chance
    key = [(r.size, r.penalty, r.strength) for r in before.recommendations]
    assert [(r.size, r.penalty, r.strength) for r in after.recommendations] == key


def test_report_writes_the_atlas_section_and_refuses_a_damaged_atlas_first(tiny_atlas, tmp_path):
    import shutil

    start, end = readme_markers("atlas", "regcli report")
    readme = tmp_path / "README.md"
    table = readme_markers("results-table", "regcli report")
    readme.write_text(f"# notes\n\n{start}\nold\n{end}\n\n{table[0]}\n{table[1]}\nmine\n")
    models = tiny_atlas / "atlas" / "size-200" / "l1-0_wd-0"
    args = [
        "report",
        str(models),
        "--atlas",
        str(tiny_atlas / "atlas"),
        "--readme",
        str(readme),
        "--images-dir",
        str(tmp_path / "images"),
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    section = text.split(start)[1].split(end)[0].strip()
    assert (
        section
        == atlas_section(
            read_atlas(tiny_atlas / "atlas"), ["images/atlas_gain.png", "images/atlas_gap.png"]
        ).strip()
    )
    assert text.endswith("mine\n")
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_atlas / "atlas", damaged)
    (damaged / "size-400" / "l1-0.001_wd-0" / "seed-1" / "metrics.json").write_text("{")
    before = snapshot(tmp_path)
    result = invoke(*args[:2], "--atlas", str(damaged), *args[4:])
    one_line_error(result, 1, "metrics")
    assert snapshot(tmp_path) == before  # nothing written: the atlas is read before any figure


def test_the_sizes_come_from_a_config_files_sweep_table_too(tmp_path):
    config = tmp_path / "atlas.toml"
    config.write_text("val_size = 100\nmin_steps = 50\n\n[sweep]\ntrain_sizes = [300, 600]\n")
    args = ["sweep", "--config", str(config), "--models-dir", str(tmp_path / "m"), "--dry-run"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["train_sizes"] == [300, 600]
    assert {c["train_images"] for c in plan["cells"]} == {300, 600}
    typed = invoke(*args, "--json", "--train-sizes", "1000")  # the command line wins
    assert {c["train_images"] for c in json.loads(typed.stdout)["cells"]} == {1000}
    printed = invoke("sweep", "--config", str(config), "--print-config")
    assert "train_sizes = [300, 600]" in printed.stdout


def test_robustness_along_a_path_is_paired_holm_adjusted_and_cached(tiny_atlas, mnist, tmp_path):
    import shutil

    from regcli.studies import path as strength_path
    from regcli.studies import weights
    from regcli.studies.shift import ROBUSTNESS_SHIFTS, robustness_findings, robustness_table

    path = tmp_path / "size-200"
    shutil.copytree(tiny_atlas / "atlas" / "size-200", path)
    cells = strength_path.path_stats(path, mnist[1], shifts=ROBUSTNESS_SHIFTS)
    none = next(c for c in cells if c.path is Penalty.NONE)
    assert (
        set(none.shifted) == set(ROBUSTNESS_SHIFTS) and none.shifted["blur:1"].versus_none is None
    )
    compared = [r.versus_none for c in cells for r in c.shifted.values() if r.versus_none]
    assert len(compared) == 8 and {d.method for d in compared} == {"paired"}
    assert all(d.adjusted_p >= d.p for d in compared)
    assert all(0 <= c.shifted["noise:0.3"].accuracy.mean <= 100 for c in cells)
    caches = sorted(path.glob("*/seed-*/shifts.json"))
    assert len(caches) == 6 and json.loads(caches[0].read_text())["test_images"] == 500
    # cached: a second read measures nothing (scoring would fail), a damaged cache is measured
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("regcli.studies.shift.score", lambda *a: pytest.fail("measured again"))
        patch.setattr(weights, "score", lambda *a: pytest.fail("pruned again"))
        again = strength_path.path_stats(path, mnist[1], shifts=ROBUSTNESS_SHIFTS)
    assert [c.shifted["rotate:30"].accuracy.mean for c in again] == [
        c.shifted["rotate:30"].accuracy.mean for c in cells
    ]
    cache = json.loads(caches[0].read_text())
    cache["accuracy"]["rotate:30"] = 1e9  # out of range: not trusted, measured again
    caches[0].write_text(json.dumps(cache))
    with pytest.warns(RegcliWarning, match=f"{caches[0]}: .* measured again"):
        redone = strength_path.path_stats(path, mnist[1], shifts=ROBUSTNESS_SHIFTS)
    assert [c.shifted["rotate:30"].accuracy.mean for c in redone] == [
        c.shifted["rotate:30"].accuracy.mean for c in cells
    ]
    said = robustness_findings(cells)
    assert "Holm-adjusted together" in said[0] and len(said) == 1 + len(ROBUSTNESS_SHIFTS)
    assert "rotate:30 acc % (vs none)" in robustness_table(cells)


def test_hostile_sizes_and_records_are_refused_in_one_line(tiny_atlas, tmp_path):
    import shutil

    from regcli.store.layout import parse_size_folder
    from regcli.store.records import load_metrics

    assert parse_size_folder("size-\u00b2") is None and parse_size_folder("size-0500") is None
    result = invoke("sweep", "--train-sizes", "\u00b2", "--dry-run", "--models-dir", str(tmp_path))
    one_line_error(result, 2, "--train-sizes")
    seed = tmp_path / "seed-0"
    shutil.copytree(tiny_atlas / "atlas" / "size-200" / "l1-0_wd-0" / "seed-0", seed)
    metrics = json.loads((seed / "metrics.json").read_text())
    metrics["epochs"][-1]["val_accuracy"] = None  # a split was held out: it must be measured
    (seed / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(Exception, match="lacks val_accuracy"):
        load_metrics(seed)
