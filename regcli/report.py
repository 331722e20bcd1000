"""`regcli report`: every figure and table of a study, from the models on disk (no training).

For the models chosen: each model's history and misclassified figures, the comparison figure,
the weights and pruning figures (one model per configuration: the single runs), and the results
tables; for a sweep, its path figures and table. A README is touched only when one is given, and
it is checked (file and markers) before any work, so a bad README costs nothing.
"""

from pathlib import Path

from regcli import compare
from regcli import strength_path as path
from regcli.data import load_split
from regcli.devices import resolve_device
from regcli.errors import RegcliError
from regcli.evaluate import plot_misclassified
from regcli.files import check_readme, update_readme
from regcli.layout import FIGURES, figure_paths, is_seed_member, unique_labels
from regcli.plots import (
    compare_figure,
    path_figure,
    pruning_figure,
    save_figure,
    strength_pruning_figure,
    weights_figure,
)
from regcli.records import load_metrics
from regcli.runs import plot_history
from regcli.weights import model_weights, prune_curve

REPORT_SPARSITIES = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9]  # fractions of conv weights zeroed
MISCLASSIFIED_COUNT = 25  # digits per misclassified grid
REPORT_BACKEND = "torch"  # the figures' numbers come from the checkpoints themselves


def report(
    model_dirs: list[Path],
    *,
    models_dir: Path = Path("models"),
    images_dir: Path,
    data_dir: Path | None,
    readme: Path | None = None,
    sweep: Path | None = None,
    device: str = "cpu",
    advance=lambda name="": None,
) -> list[Path]:
    """Write every figure (and the README's tables if `readme`); returns the figures written."""
    sections = [compare.README_SECTION] + ([path.README_SECTION] if sweep is not None else [])
    if readme is not None:
        check_readme(readme, sections)
    device = resolve_device(device).type  # an explicit device must be there
    test = load_split(data_dir, "test")
    images_dir = Path(images_dir)
    labels = unique_labels(model_dirs, models_dir)
    # every model readable before any figure
    rows = [compare.summarize(d, labels[d]) for d in model_dirs]
    series = compare.series(rows)
    # each model on the test images its accuracy was measured on (all 10,000 unless limited)
    tested = {
        d: test.head(row["config"].limit_test) for d, row in zip(model_dirs, rows, strict=True)
    }
    written = []
    misclassified = figure_paths(images_dir, model_dirs, "misclassified", models_dir)
    for model_dir in model_dirs:
        written.append(plot_history(model_dir, images_dir, labels[model_dir]))
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
    written.append(save(compare_figure(series), images_dir / FIGURES["compare"]))
    # one model per configuration keeps these two figures readable
    singles = [d for d in model_dirs if not is_seed_member(d)] or model_dirs
    stats = [{**model_weights(d), "single": False} for d in singles]
    written.append(save(weights_figure(stats), images_dir / FIGURES["weights"]))
    curves = [
        prune_curve(d, REPORT_SPARSITIES, backend=REPORT_BACKEND, test=tested[d]) for d in singles
    ]
    written.append(save(pruning_figure(curves), images_dir / FIGURES["pruning"]))
    path_markdown = None
    if sweep is not None:
        cells = path.path_stats(sweep, test, backend=REPORT_BACKEND, device=device, advance=advance)
        written += path_figures(cells, Path(sweep).name, images_dir)
        path_markdown = path_section(cells, Path(sweep))
    if readme is not None:
        texts = {compare.README_SECTION: compare.results_markdown(rows)}
        if path_markdown is not None:
            texts[path.README_SECTION] = path_markdown
        update_readme(readme, texts)
    return written


def save(figure, target: Path) -> Path:
    save_figure(figure, target)
    return target


def path_figures(cells: list[dict], name: str, images_dir: Path) -> list[Path]:
    """<sweep>_path.png (four quantities against strength) and <sweep>_pruning.png."""
    title = f"Regularization path ({name}: {cells[0]['seeds']} seeds per cell)"
    return [
        save(path_figure(cells, title), Path(images_dir) / f"{name}_path.png"),
        save(strength_pruning_figure(cells, title), Path(images_dir) / f"{name}_pruning.png"),
    ]


def sweep_report(
    sweep: Path,
    *,
    images_dir: Path,
    data_dir: Path | None,
    device: str = "auto",
    advance=lambda name="": None,
) -> tuple[list[dict], list[Path]]:
    """`regcli sweep --report`: the path's cells and its two figures."""
    device = resolve_device(device).type
    cells = path.path_stats(
        sweep, load_split(data_dir, "test"), backend=REPORT_BACKEND, device=device, advance=advance
    )
    return cells, path_figures(cells, Path(sweep).name, images_dir)


def sweep_runs(sweep: Path, cells: list[dict]) -> dict | None:
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
        "models": sum(c["seeds"] for c in cells),
        "cells": len(cells),
        "seeds": max(c["seeds"] for c in cells),
        "epochs": epochs,
        "machine": f"{machine} (PyTorch {torch_version})",
        "seconds": sum(groups.values()),
        "groups": len(groups),
        "largest_group": max(len(k) for k in groups),
    }


def path_section(cells: list[dict], sweep: Path) -> str:
    """The README's path section: findings computed from the numbers, then the table."""
    sentences = path.findings(cells, sweep_runs(sweep, cells))
    return "\n".join(f"- {s}" for s in sentences) + "\n\n" + path.path_table(cells, markdown=True)
