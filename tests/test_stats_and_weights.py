import json
import math

import pytest
import torch

from regcli.checkpoints import load_model
from regcli.errors import UsageError
from regcli.scoring import score
from regcli.stats import sample_std, seed_stats, t_quantile, welch
from regcli.weights import parse_sparsities, prunable, prune_curve, pruned_state, weight_stats
from tests.conftest import DATA_DIR, invoke, one_line_error


def test_t_quantiles_match_the_tables():
    # two-sided 95%: the textbook values
    for df, expected in [(1, 12.706), (4, 2.776), (10, 2.228), (30, 2.042)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_welch_interval_against_a_hand_computed_example():
    # a = 4, 5, 6 and b = 1, 2, 3: means 5 and 2, variances 1 and 1, n = 3 each.
    # se = sqrt(1/3 + 1/3) = 0.81650; df = (2/3)^2 / ((1/3)^2/2 + (1/3)^2/2) = 4;
    # t(0.975, 4) = 2.77645; half width = 2.77645 * 0.81650 = 2.26696.
    difference = welch([4, 5, 6], [1, 2, 3])
    assert difference.estimate == 3
    assert difference.df == pytest.approx(4)
    assert difference.half_width == pytest.approx(2.26696, abs=1e-4)
    assert difference.verdict() == "better by 3.00 +- 2.27 points"
    assert welch([1, 2, 3], [4, 5, 6]).verdict() == "worse by 3.00 +- 2.27 points"
    assert welch([1, 2, 3], [1.5, 2.5, 3.5]).verdict().startswith("within noise")


def test_welch_with_unequal_variances_and_sizes():
    # a = 1, 3 (var 2, n 2); b = 2, 2, 2, 6 (var 4, n 4): va = 1, vb = 1, se = sqrt(2);
    # df = 2^2 / (1/1 + 1/3) = 3; t(0.975, 3) = 3.18245; half width = 4.50069.
    difference = welch([1, 3], [2, 2, 2, 6])
    assert difference.estimate == -1
    assert difference.df == pytest.approx(3)
    assert difference.half_width == pytest.approx(4.50069, abs=1e-4)


def test_too_few_seeds_and_no_spread():
    assert math.isnan(welch([1.0], [1.0, 2.0]).half_width)
    assert welch([1.0], [2.0, 3.0]).verdict() == "needs at least 2 seeds on each side"
    identical = welch([99.5, 99.5], [99.5, 99.5])
    assert identical.half_width == 0 and identical.verdict().startswith("within noise")
    assert sample_std([2.0, 2.0, 2.0]) == 0 and sample_std([7.0]) == 0


def test_weights_table_matches_norms_computed_directly(quick_model, tmp_path):
    models = ["--models-dir", quick_model.parent]  # the name derives from its path there
    result = invoke("weights", quick_model, "--json", "--images-dir", tmp_path, *models)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    # a figure of one model goes under a name derived from it, never the study's fixed name
    assert (tmp_path / "weights_compare_quick.png").stat().st_size > 10_000
    assert not (tmp_path / "weights_compare.png").exists()
    model, _ = load_model(quick_model)
    convs = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    flat = torch.cat([w.flatten() for w in convs])
    assert row["count"] == flat.numel()
    assert row["l1_norm"] == pytest.approx(float(flat.abs().sum()), rel=1e-6)
    assert row["l2_norm"] == pytest.approx(float(flat.pow(2).sum().sqrt()), rel=1e-6)
    for threshold in (1e-3, 1e-2, 1e-1):
        share = float((flat.abs() < threshold).sum()) / flat.numel()
        assert row[f"below_{threshold:g}"] == pytest.approx(share)


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.7, 0.9])
def test_pruning_zeroes_exactly_that_share_of_the_prunable_weights(quick_model, sparsity):
    model, _ = load_model(quick_model)
    weights = prunable(model)
    assert all((w != 0).all() for w in weights.values())  # no exact zeros to begin with
    state = pruned_state(model, sparsity)
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in state.values())
    assert zeros == round(sparsity * total)
    # the zeroed ones are the smallest: every kept weight is at least as large as any zeroed one
    original = torch.cat([w.detach().flatten() for w in weights.values()])
    pruned = torch.cat([w.flatten() for w in state.values()])
    if 0 < zeros < total:
        assert original[pruned == 0].abs().max() <= original[pruned != 0].abs().min()
    assert weight_stats(model)["count"] == total


def test_pruning_curve_through_both_backends(exported, mnist):
    from regcli.backends import open_predictor

    model_dir = exported
    test = mnist[1].head(2_000)
    curves = {
        b: prune_curve(model_dir, [0.0, 0.5, 0.95], backend=b, test=test) for b in ("torch", "onnx")
    }
    unpruned = score(open_predictor(model_dir, backend="torch"), test).accuracy
    for curve in curves.values():
        accuracies = [p["accuracy"] for p in curve["points"]]
        assert accuracies[0] == unpruned  # sparsity 0 changes nothing
        assert accuracies[2] < accuracies[0] - 0.2  # 95% of the weights gone: it breaks
    for a, b in zip(curves["torch"]["points"], curves["onnx"]["points"], strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=2e-3)


def test_prune_cli_and_bad_sparsity(quick_model, tmp_path):
    result = invoke(
        "prune",
        quick_model,
        "--sparsity",
        "0.5",
        "--images-dir",
        tmp_path,
        "--data-dir",
        DATA_DIR,
        "--models-dir",
        quick_model.parent,
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pruning_compare_quick.png").stat().st_size > 10_000
    header, row = result.stdout.strip().splitlines()
    assert header.split()[1:] == ["0%", "zero", "50%", "zero"] and row.startswith("quick")
    for bad in ("1.5", "x", ""):
        with pytest.raises(UsageError):
            parse_sparsities(bad)
    one_line_error(invoke("prune", quick_model, "--sparsity", "2"), 2, "--sparsity")


def test_seed_stats_of_one_value_and_of_several():
    one = seed_stats([99.5])
    assert (one.n, one.mean, one.std, one.min, one.max) == (1, 99.5, 0.0, 99.5, 99.5)
    assert one.half_width is None and one.spread == 0  # undefined is None, never NaN
    three = seed_stats([4, 5, 6])
    assert (three.n, three.mean, three.std, three.min, three.max) == (3, 5, 1, 4, 6)
    # t(0.975, 2) = 4.30265; half width = 4.30265 * 1 / sqrt(3) = 2.48414
    assert three.half_width == pytest.approx(2.48414, abs=1e-4)
    assert three.versus(seed_stats([1, 2, 3])) == welch([4, 5, 6], [1, 2, 3])
    assert math.isnan(one.versus(three).half_width) and one.versus(three).estimate == 94.5
    assert not welch([1, 2, 3], [1.5, 2.5, 3.5]).worse and welch([1, 2, 3], [4, 5, 6]).worse
    with pytest.raises(ValueError):
        seed_stats([])
