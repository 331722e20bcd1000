"""Statistics (t quantiles, Welch and paired intervals, Holm) and weight statistics (norms, shares
of small weights, pruning exactly the share asked)."""

import json
import math

import pytest
import torch

from regcli.core.errors import UsageError
from regcli.inference.scoring import score
from regcli.store.checkpoints import load_model
from regcli.studies.stats import (
    holm,
    holm_adjusted,
    one_standard_error,
    paired,
    sample_std,
    seed_stats,
    t_quantile,
    trend,
    welch,
)
from regcli.studies.weights import (
    parse_sparsities,
    prunable,
    prune_curve,
    pruned_state,
    weight_stats,
)
from tests.conftest import DATA_DIR, invoke, one_line_error


def test_t_quantiles_match_the_tables():
    # two-sided 95%: the textbook values
    for df, expected in [(1, 12.706), (4, 2.776), (10, 2.228), (30, 2.042)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_welch_interval_against_a_hand_computed_example():
    # a = 4, 5, 6 and b = 1, 2, 3: means 5 and 2, variances 1 and 1, n = 3 each.
    # se = sqrt(1/3 + 1/3) = 0.81650; df = (2/3)^2 / ((1/3)^2/2 + (1/3)^2/2) = 4;
    # t(0.975, 4) = 2.77645; half width = 2.77645 * 0.81650 = 2.26696; t = 3 / 0.81650 = 3.6742
    # and the closed form of Student's t with 4 degrees of freedom gives p = 0.0213.
    difference = welch([4, 5, 6], [1, 2, 3])
    assert difference.estimate == 3
    assert difference.df == pytest.approx(4)
    assert difference.half_width == pytest.approx(2.26696, abs=1e-4)
    assert difference.p == pytest.approx(0.0213, abs=1e-4) and difference.method == "Welch"
    assert difference.verdict() == "better by 3.00 +- 2.27 points; Welch, p 0.021"
    assert welch([1, 2, 3], [4, 5, 6]).verdict() == "worse by 3.00 +- 2.27 points; Welch, p 0.021"
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
    from regcli.inference.backends import open_predictor

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


# --- statistics that fit the design: paired, Holm, trend, one standard error -------------------

SEEDED_A = [99.50, 99.45, 99.60, 99.55, 99.40]  # seeds 0..4 of one cell
SEEDED_B = [99.55, 99.50, 99.58, 99.62, 99.47]  # the same seeds of the baseline cell


def test_the_paired_interval_against_a_hand_computed_case():
    # differences -0.05 -0.05 +0.02 -0.07 -0.07: mean -0.044, sd 0.0371484, se 0.0166132;
    # t(0.975, 4) = 2.7764451 gives +- 0.0461258; t = -2.6485, and Student's t with 4 degrees
    # of freedom in closed form, F(t) = 1/2 + 3/4 x (1 - x^2 / 3) with x = t / sqrt(4 + t^2),
    # gives the two-sided p = 0.0570718
    difference = paired(SEEDED_A, SEEDED_B)
    assert difference.method == "paired" and difference.df == 4
    assert difference.estimate == pytest.approx(-0.044, abs=1e-12)
    assert difference.half_width == pytest.approx(0.0461258, abs=1e-6)
    assert difference.p == pytest.approx(0.0570718, abs=1e-6)
    assert not difference.measurable and difference.verdict().startswith("within noise (-0.04")


def test_groups_of_the_same_seeds_are_paired_and_others_welch():
    a = seed_stats(SEEDED_A, seeds=range(5))
    same = a.versus(seed_stats(SEEDED_B, seeds=range(5)))
    other = a.versus(seed_stats(SEEDED_B, seeds=range(5, 10)))
    unknown = seed_stats(SEEDED_A).versus(seed_stats(SEEDED_B))
    assert same == paired(SEEDED_A, SEEDED_B)
    assert other.method == unknown.method == "Welch" and other == unknown
    assert other.half_width == pytest.approx(welch(SEEDED_A, SEEDED_B).half_width)


def test_holm_against_a_known_table():
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []
    significant = paired(SEEDED_A, [v + 0.2 for v in SEEDED_A[::-1]])
    adjusted = holm_adjusted([None, significant, paired(SEEDED_A, SEEDED_B)])
    assert adjusted[0] is None and adjusted[1].adjusted_p == pytest.approx(2 * significant.p)
    assert "Holm p" in adjusted[2].verdict()


def test_the_trend_per_decade_with_seeds_as_fixed_effects():
    strengths = [1e-5, 1e-4, 1e-3]
    exact = [(s, k, 99 + 0.5 * k - 0.1 * math.log10(s)) for s in strengths for k in range(3)]
    line = trend(exact)
    assert line.slope == pytest.approx(-0.1) and line.points == 9
    assert line.half_width == pytest.approx(0, abs=1e-9)
    noisy = [(s, k, v + (0.01 if (k + i) % 2 else -0.01)) for i, (s, k, v) in enumerate(exact)]
    assert trend(noisy).slope == pytest.approx(-0.1, abs=0.02) and trend(noisy).p < 0.01
    assert math.isnan(trend([(1e-3, 0, 99.0)]).half_width)


def test_the_one_standard_error_rule_takes_the_strongest_within_one_se_of_the_best():
    best = seed_stats([95.4, 95.5, 95.7, 95.8])  # mean 95.6, se 0.0913
    choices = [
        (0.0, seed_stats([95.0, 95.1])),
        (1e-4, best),
        (1e-3, seed_stats([95.52, 95.53])),  # within one se of the best
        (1e-2, seed_stats([95.2, 95.3])),
    ]
    assert one_standard_error(choices) == 1e-3
    assert one_standard_error(choices[:2]) == 1e-4
