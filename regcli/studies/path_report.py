"""The regularization path's report: the sentences that say what the path shows, computed from
its cells' numbers (studies/path.py), and its section of the docs: those sentences, then the
table. No sentence claims more than its numbers: a difference is "measurable" only when its
Holm-adjusted p is below ALPHA.
"""

import math
from pathlib import Path

from regcli.core.config import Penalty
from regcli.core.errors import RegcliError
from regcli.store.records import load_metrics
from regcli.studies.path import PATH_SPARSITIES, PathCell, path_table
from regcli.studies.stats import ALPHA, trend
from regcli.studies.weights import NEAR_ZERO

# The course notebook's best test accuracy (%) per variant, one run each, as its README reports
# them (shared/origin/notebook-README.md): the single-run conclusions the path is held against.
NOTEBOOK_ACCURACY = {"none": 99.42, "l1": 99.59, "l2": 99.46, "l1_l2": 99.35}
NOISE_SIGMAS = 3  # a gap of more than this many seed standard deviations is not seed noise


def sweep_runs(sweep: Path, cells: list[PathCell]) -> dict | None:
    """How the sweep was trained, from its models' run records: machine, groups, seconds."""
    groups, machine, epochs, torch_version = {}, None, None, "?"
    for folder in sorted(Path(sweep).glob("*/seed-*")):
        try:
            metrics = load_metrics(folder)
        except RegcliError:
            continue
        run = metrics.get("run") or {}
        group = run.get("group") or {}
        key = tuple(group.get("members", [str(folder)]))
        groups[key] = run.get("seconds") or 0.0
        info = run.get("machine") or {}
        machine = info.get("gpu") or info.get("cpu") or machine
        torch_version = (run.get("versions") or {}).get("torch", "?")
        epochs = metrics["config"]["epochs"]
    if not groups or machine is None:
        return None
    return {
        "models": sum(c.seeds for c in cells),
        "cells": len(cells),
        "seeds": max(c.seeds for c in cells),
        "epochs": epochs,
        "machine": f"{machine} (PyTorch {torch_version})",
        "seconds": sum(groups.values()),
        "groups": len(groups),
        "largest_group": max(len(k) for k in groups),
    }


def path_section(cells: list[PathCell], sweep: Path) -> str:
    """The README's path section: findings computed from the numbers, then the table."""
    sentences = findings(cells, sweep_runs(sweep, cells))
    table = path_table(cells, markdown=True)
    return "\n".join(f"- {s}" for s in sentences) + "\n\n" + table


# --- what the path says, as sentences for the README --------------------------------------------


def _fmt(path: Penalty, strength: float) -> str:
    return f"{'l1' if path is Penalty.L1 else 'weight decay'} = {strength:g}"


def findings(cells: list[PathCell], runs: dict | None = None) -> list[str]:
    """What the path says, as sentences computed from the numbers (for the README)."""
    base = next((c for c in cells if c.path is Penalty.NONE and c.accuracy is not None), None)
    if base is None:
        return ["The sweep has no finished unregularized cell to compare with."]
    said = [runs_sentence(runs)] if runs else []
    said += method_sentences(cells)
    for penalty, name in ((Penalty.L1, "L1"), (Penalty.L2, "Weight decay")):
        along = sorted((c for c in cells if c.path is penalty), key=lambda c: c.strength)
        if along:
            said += sparsity_sentences(name, along, base)
            said += accuracy_sentences(name, along, base)
            said += trend_sentences(name, along)
            said += lost_sentences(along)
    return said + pruning_sentences(cells, base) + noise_sentences(cells)


def method_sentences(cells: list[PathCell]) -> list[str]:
    """How the cells are compared with none: the method the design allows, and the correction."""
    compared = [c.versus_none for c in cells if c.versus_none is not None]
    if not compared:
        return []
    methods = sorted({d.method for d in compared})
    how = (
        "seed by seed (seed k starts from the same weights and data order in every cell: a "
        "paired t interval of the per-seed differences)"
        if methods == ["paired"]
        else f"by {' and '.join(methods)} t intervals"
    )
    return [
        f"Each cell's final test accuracy is compared with the unregularized cell's {how}; the "
        f"{len(compared)} comparisons are Holm-adjusted together, and a difference counts as "
        f"measurable when its adjusted p is below {ALPHA:g}."
    ]


def runs_sentence(runs: dict) -> str:
    """How the sweep was trained (sweep_runs)."""
    return (
        f"{runs['models']} models ({runs['cells']} cells x {runs['seeds']} seeds, "
        f"{runs['epochs']} epochs each) trained on {runs['machine']} in "
        f"{runs['seconds']:.0f} s of training ({runs['groups']} group"
        f"{'s' if runs['groups'] != 1 else ''} of up to {runs['largest_group']} models)."
    )


def sparsity_sentences(name: str, along: list[PathCell], base: PathCell) -> list[str]:
    """Where a path first doubles the unregularized share of near-zero weights, if it does."""
    good = [c for c in along if c.accuracy is not None]
    if not good:
        return []
    share = base.near_zero_share.mean
    sparse = next((c for c in good if c.near_zero_share.mean >= 2 * share), None)
    most = max(good, key=lambda c: c.near_zero_share.mean)
    top = f"{most.near_zero_share.mean:.1f}%"
    if sparse is None:
        return [
            f"No {name.lower()} strength in the sweep doubles the share of near-zero conv "
            f"weights: at most {top} (at {_fmt(most.path, most.strength)}) against {share:.1f}%."
        ]
    reach = (
        f"; it reaches {top} at {_fmt(most.path, most.strength)}." if most is not sparse else "."
    )
    return [
        f"{name} first doubles the share of near-zero conv weights (|w| < {NEAR_ZERO:g}) "
        f"at {_fmt(sparse.path, sparse.strength)}: {sparse.near_zero_share.mean:.1f}% against "
        f"{share:.1f}% without regularization{reach}"
    ]


def accuracy_sentences(name: str, along: list[PathCell], base: PathCell) -> list[str]:
    """Where a path's accuracy first falls measurably below the unregularized cell's."""
    good = [c for c in along if c.accuracy is not None]
    worse = next((c for c in good if c.versus_none is not None and c.versus_none.worse), None)
    if worse:
        return [
            f"{name}'s accuracy first falls measurably at {_fmt(worse.path, worse.strength)}: "
            f"{worse.accuracy.mean:.2f}% ({worse.versus_none.verdict()}) against none's "
            f"{base.accuracy.mean:.2f}%."
        ]
    if not good:
        return []
    return [
        f"No {name.lower()} strength up to {_fmt(good[-1].path, good[-1].strength)} is "
        f"measurably worse than none (no Holm-adjusted p below {ALPHA:g} with a loss)."
    ]


def trend_sentences(name: str, along: list[PathCell]) -> list[str]:
    """The slope of accuracy per decade of strength along the path, seeds paired."""
    points = [
        (c.strength, seed, value)
        for c in along
        if c.accuracy is not None and c.strength > 0
        for seed, value in c.accuracy.by_seed
    ]
    slope = trend(points)
    if math.isnan(slope.half_width):
        return []
    lowest, highest = min(p[0] for p in points), max(p[0] for p in points)
    return [
        f"Along the {name.lower()} path from {lowest:g} to {highest:g}, final test accuracy "
        f"changes by {slope.text()}, each seed its own intercept."
    ]


def lost_sentences(along: list[PathCell]) -> list[str]:
    """The weakest strength of a path where no seed has a model, if any."""
    lost = next((c for c in along if c.accuracy is None), None)
    if lost is None:
        return []
    if lost.diverged == lost.seeds:
        return [f"At {_fmt(lost.path, lost.strength)} every seed diverged."]
    return [f"At {_fmt(lost.path, lost.strength)} no seed has a usable model."]


def pruning_sentences(cells: list[PathCell], base: PathCell) -> list[str]:
    """How much accuracy the best cell keeps at the highest pruning level, against none."""
    top = max(PATH_SPARSITIES)
    along = [c for c in cells if c.path in (Penalty.L1, Penalty.L2) and c.pruned]
    if not along or not base.pruned:
        return []
    best = max(along, key=lambda c: c.pruned[top])
    return [
        f"With {100 * top:g}% of the conv weights zeroed (no retraining), the best cell, "
        f"{_fmt(best.path, best.strength)}, keeps {best.pruned[top]:.1f}% test "
        f"accuracy where the unregularized network keeps {base.pruned[top]:.1f}%."
    ]


def noise_sentences(cells: list[PathCell]) -> list[str]:
    """Whether seed noise explains the gap between the notebook's single runs: the gap in
    units of one run's seed standard deviation measured here."""
    stds = sorted(c.accuracy.std for c in cells if c.accuracy is not None and c.accuracy.n > 1)
    if not stds or stds[len(stds) // 2] == 0:
        return []
    sigma = stds[len(stds) // 2]  # one run's spread, median over cells
    ranked = sorted(NOTEBOOK_ACCURACY, key=NOTEBOOK_ACCURACY.get)
    best, worst = ranked[-1], ranked[0]
    gap = NOTEBOOK_ACCURACY[best] - NOTEBOOK_ACCURACY[worst]
    explained = (
        "seed noise alone does not explain that gap (the notebook also reported each run's "
        "best epoch, chosen on the test set, not its final one)"
        if gap > NOISE_SIGMAS * sigma
        else "seed noise alone could explain that gap, so single runs cannot rank the penalties"
    )
    return [
        f"The course notebook's single runs ranked {best} first "
        f"({NOTEBOOK_ACCURACY[best]:.2f}%) and {worst} last ({NOTEBOOK_ACCURACY[worst]:.2f}%), "
        f"{gap:.2f} points apart: {gap / sigma:.1f} standard deviations of one run's seed noise "
        f"measured here ({sigma:.2f} points, median over cells), so {explained}."
    ]
