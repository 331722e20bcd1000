"""`regcli report`: every figure and table of a study, from the models on disk (no training),
and the README text drawn from them, the path's findings included.

For the models chosen: each model's history and misclassified figures, the comparison figure,
the weights and pruning figures (one model per configuration: the single runs), and the results
tables; for a sweep, its path figures and table, and sentences saying what the path shows. A
README is touched only when one is given, and it is checked (file and markers) before any work,
so a bad README costs nothing.
"""

from pathlib import Path

from regcli.core.errors import UsageError
from regcli.core.files import check_readme, update_readme
from regcli.data.mnist import load_split
from regcli.inference.evaluate import plot_misclassified
from regcli.plots.figures import (
    compare_figure,
    history_figure,
    path_figure,
    pruning_figure,
    robustness_figure,
    save_figure,
    strength_pruning_figure,
    weights_figure,
)
from regcli.store.layout import FIGURES, figure_path, figure_paths, is_seed_member, unique_labels
from regcli.store.records import load_metrics
from regcli.studies import atlas_report, compare, pruning_report, shift
from regcli.studies import path as paths
from regcli.studies.atlas import read_atlas
from regcli.studies.path import PathCell
from regcli.studies.path_report import path_section
from regcli.studies.pruning import read_study
from regcli.studies.shift import ROBUSTNESS_SHIFTS
from regcli.studies.variants_report import results_section
from regcli.studies.weights import model_weights, prune_curve
from regcli.train.devices import resolve_device

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
    atlas: Path | None = None,
    pruned: Path | None = None,
    device: str = "cpu",
    advance=lambda name="": None,
) -> list[Path]:
    """Write every figure (and the README's tables if `readme`); returns the figures written."""
    sections = [compare.README_SECTION]
    sections += [paths.README_SECTION] if sweep is not None else []
    sections += [shift.README_SECTION] if sweep is not None else []
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
    cells = paths.path_stats(
        sweep, test, backend=REPORT_BACKEND, device=device, shifts=ROBUSTNESS_SHIFTS,
        advance=advance,
    )  # fmt: skip
    written = path_figures(cells, sweep.name, images_dir)
    robust = robustness_figure(cells, list(ROBUSTNESS_SHIFTS), "Robustness along the path")
    target = save(robust, figure_path(images_dir, sweep.name, "robustness"))
    shown = relative_to(target, readme) if readme else None
    texts[paths.README_SECTION] = path_section(cells, sweep)
    texts[shift.README_SECTION] = shift.robustness_section(cells, shown)
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
    """`regcli sweep --report`: the path's cells (paths.cells_json for --json) and its
    two figures."""
    device = resolve_device(device).type
    cells = paths.path_stats(
        sweep, load_split(data_dir, "test"), backend=REPORT_BACKEND, device=device, advance=advance
    )
    return cells, path_figures(cells, Path(sweep).name, images_dir)
