"""`regcli report`: every figure and table of a study, from the models on disk (no training),
and the README text drawn from them, the path's findings included.

For the models chosen: each model's history and misclassified figures, the comparison figure,
the weights and pruning figures (one model per configuration: the single runs), and the results
tables; for a sweep, its path figures and table, and sentences saying what the path shows. A
README is touched only when one is given, and it is checked (file and markers) before any work,
so a bad README costs nothing.
"""

import math
from pathlib import Path

from regcli import atlas_report, compare, pruning_report, robustness_report, strength_path
from regcli.atlas import read_atlas
from regcli.data import load_split
from regcli.devices import resolve_device
from regcli.errors import RegcliError, UsageError
from regcli.evaluate import plot_misclassified
from regcli.files import check_readme, update_readme
from regcli.layout import FIGURES, figure_path, figure_paths, is_seed_member, unique_labels
from regcli.plots import (
    compare_figure,
    history_figure,
    path_figure,
    pruning_figure,
    robustness_figure,
    save_figure,
    strength_pruning_figure,
    weights_figure,
)
from regcli.pruning_study import read_study
from regcli.records import load_metrics
from regcli.robustness import ROBUSTNESS_SHIFTS
from regcli.stats import ALPHA, trend
from regcli.strength_path import PATH_SPARSITIES, PathCell, Penalty
from regcli.study_text import results_section
from regcli.weights import NEAR_ZERO, model_weights, prune_curve

REPORT_SPARSITIES = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9]  # fractions of conv weights zeroed
MISCLASSIFIED_COUNT = 25  # digits per misclassified grid
REPORT_BACKEND = "torch"  # the figures' numbers come from the checkpoints themselves
# The course notebook's best test accuracy (%) per variant, one run each, as its README reports
# them (shared/origin/notebook-README.md): the single-run conclusions the path is held against.
NOTEBOOK_ACCURACY = {"none": 99.42, "l1": 99.59, "l2": 99.46, "l1_l2": 99.35}
NOISE_SIGMAS = 3  # a gap of more than this many seed standard deviations is not seed noise


def report(
    model_dirs: list[Path],
    *,
    models_dir: Path = Path("models"),
    images_dir: Path,
    data_dir: Path | None,
    readme: Path | None = None,
    sweep: Path | None = None,
    atlas: Path | None = None,
    pruned: Path | None = None,
    device: str = "cpu",
    advance=lambda name="": None,
) -> list[Path]:
    """Write every figure (and the README's tables if `readme`); returns the figures written."""
    sections = [compare.README_SECTION]
    sections += [strength_path.README_SECTION] if sweep is not None else []
    sections += [robustness_report.README_SECTION] if sweep is not None else []
    sections += [atlas_report.README_SECTION] if atlas is not None else []
    sections += [pruning_report.README_SECTION] if pruned is not None else []
    if pruned is not None and sweep is None:
        raise UsageError("--pruned needs --sweep: the pruned runs' sources are its models")
    if readme is not None:
        check_readme(readme, sections)
    device = resolve_device(device).type  # an explicit device must be there
    test = load_split(data_dir, "test")
    images_dir = Path(images_dir)
    labels = unique_labels(model_dirs, models_dir)
    # every model readable before any figure
    rows = [compare.summarize(d, labels[d]) for d in model_dirs]
    found = read_atlas(atlas, join=sweep) if atlas is not None else None
    study = read_study(pruned, sweep, test, device) if pruned is not None else None
    series = compare.series(rows)
    # each model on the test images its accuracy was measured on (all 10,000 unless limited)
    tested = {d: test.head(row.config.limit_test) for d, row in zip(model_dirs, rows, strict=True)}
    written = model_figures(model_dirs, labels, tested, images_dir, models_dir, advance)
    written += study_figures(series, model_dirs, tested, images_dir)
    texts = {compare.README_SECTION: results_section(rows, model_dirs)}
    if sweep is not None:
        written += path_sections(Path(sweep), test, device, advance, images_dir, readme, texts)
    written += study_sections(found, atlas, study, pruned, images_dir, readme, texts)
    if readme is not None:
        update_readme(readme, texts)
    return written


def path_sections(sweep: Path, test, device, advance, images_dir, readme, texts) -> list[Path]:
    """The path's and its robustness's figures, and their sections into `texts`."""
    cells = strength_path.path_stats(
        sweep, test, backend=REPORT_BACKEND, device=device, shifts=ROBUSTNESS_SHIFTS,
        advance=advance,
    )  # fmt: skip
    written = path_figures(cells, sweep.name, images_dir)
    robust = robustness_figure(cells, list(ROBUSTNESS_SHIFTS), "Robustness along the path")
    target = save(robust, figure_path(images_dir, sweep.name, "robustness"))
    shown = relative_to(target, readme) if readme else None
    texts[strength_path.README_SECTION] = path_section(cells, sweep)
    texts[robustness_report.README_SECTION] = robustness_report.robustness_section(cells, shown)
    return [*written, target]


def study_sections(found, atlas, study, pruned, images_dir, readme, texts: dict) -> list[Path]:
    """The atlas's and the pruning study's figures, and their sections into `texts`."""
    written = []
    if found is not None:
        figures = atlas_report.atlas_figures(found, Path(atlas).name, images_dir)
        written += figures
        shown = [relative_to(f, readme) for f in figures] if readme else []
        texts[atlas_report.README_SECTION] = atlas_report.atlas_section(found, shown)
    if study is not None:
        figure = pruning_report.study_figure(study, Path(pruned).name, images_dir)
        written.append(figure)
        shown = relative_to(figure, readme) if readme else None
        texts[pruning_report.README_SECTION] = pruning_report.section(study, shown)
    return written


def relative_to(figure: Path, readme: Path) -> str:
    """A figure's path as the README links it (relative to the README's folder)."""
    try:
        return str(Path(figure).resolve().relative_to(Path(readme).resolve().parent))
    except ValueError:
        return str(Path(figure).resolve())


def model_figures(model_dirs, labels, tested, images_dir, models_dir, advance) -> list[Path]:
    """Each model's history and misclassified figures."""
    written = []
    misclassified = figure_paths(images_dir, model_dirs, "misclassified", models_dir)
    for model_dir in model_dirs:
        label = labels[model_dir]
        history = history_figure(label, load_metrics(model_dir)["epochs"])
        written.append(save(history, figure_path(images_dir, label, "history")))
        target = misclassified[model_dir]
        plot_misclassified(
            model_dir,
            backend=REPORT_BACKEND,
            test=tested[model_dir],
            count=MISCLASSIFIED_COUNT,
            out=target,
        )
        written.append(target)
        advance(model_dir.name)
    return written


def study_figures(series, model_dirs: list[Path], tested, images_dir: Path) -> list[Path]:
    """The comparison figure, and the weights and pruning figures of the single runs."""
    written = [save(compare_figure(series), images_dir / FIGURES["compare"])]
    # one model per configuration keeps these two figures readable
    singles = [d for d in model_dirs if not is_seed_member(d)] or model_dirs
    stats = [{**model_weights(d), "single": False} for d in singles]
    written.append(save(weights_figure(stats), images_dir / FIGURES["weights"]))
    curves = [
        prune_curve(d, REPORT_SPARSITIES, backend=REPORT_BACKEND, test=tested[d]) for d in singles
    ]
    written.append(save(pruning_figure(curves), images_dir / FIGURES["pruning"]))
    return written


def save(figure, target: Path) -> Path:
    save_figure(figure, target)
    return target


def path_figures(cells: list[PathCell], name: str, images_dir: Path) -> list[Path]:
    """<sweep>_path.png (four quantities against strength) and <sweep>_pruning.png."""
    title = f"Regularization path ({name}: {cells[0].seeds} seeds per cell)"
    return [
        save(path_figure(cells, title), figure_path(images_dir, name, "path")),
        save(strength_pruning_figure(cells, title), figure_path(images_dir, name, "pruning")),
    ]


def sweep_report(
    sweep: Path,
    *,
    images_dir: Path,
    data_dir: Path | None,
    device: str = "auto",
    advance=lambda name="": None,
) -> tuple[list[PathCell], list[Path]]:
    """`regcli sweep --report`: the path's cells (strength_path.cells_json for --json) and its
    two figures."""
    device = resolve_device(device).type
    cells = strength_path.path_stats(
        sweep, load_split(data_dir, "test"), backend=REPORT_BACKEND, device=device, advance=advance
    )
    return cells, path_figures(cells, Path(sweep).name, images_dir)


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
    table = strength_path.path_table(cells, markdown=True)
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
    """How the sweep was trained (report.sweep_runs)."""
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
