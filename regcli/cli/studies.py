"""Commands over several models: `compare`, `report` and `weights`: tables, figures and the
README's generated sections, from the models on disk (no training)."""

from pathlib import Path
from typing import Annotated

import typer

from regcli.cli.app import app, each_model, exit_if, print_json, print_line
from regcli.cli.console import model_progress, say, warn
from regcli.cli.options import (
    SUMMARY_OPTIONS,
    DataDir,
    ImagesDir,
    ModelsArg,
    ModelsDir,
    Quiet,
    with_options,
)
from regcli.core.config import Device
from regcli.store.layout import STUDY_FIGURES, summary_figure, unique_labels
from regcli.store.listing import model_dirs


@app.command()
@with_options(SUMMARY_OPTIONS)
def compare(
    models: ModelsArg = None,
    markdown: Annotated[bool, typer.Option(help="Print Markdown tables.")] = False,
    *,
    given: dict,
):
    """Compare models: test accuracy and loss curves in one figure, and summary tables."""
    from regcli.plots.figures import compare_figure, save_figure
    from regcli.studies import compare as comparison

    out, models_dir, images_dir, json_output, quiet = given.values()
    dirs = model_dirs(models, models_dir)
    labels = unique_labels(dirs, models_dir)
    rows, failed = each_model(dirs, "reading", quiet, lambda d: comparison.summarize(d, labels[d]))
    if rows and not no_figure(failed, quiet):
        figure = summary_figure("compare", images_dir, dirs if models else None, out, models_dir)
        save_figure(compare_figure(comparison.series(rows)), figure)
        if json_output:
            print_json(comparison.as_json(rows))
        else:
            print_line(comparison.comparison_tables(rows, markdown))
        differences = comparison.data_differences(rows)
        if differences:
            warn(differences)
        say(f"wrote {figure}", quiet)
    exit_if(failed)


@app.command()
def report(
    models: ModelsArg = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = STUDY_FIGURES,
    data_dir: DataDir = None,
    readme: Annotated[
        Path | None,
        typer.Option(help="Also refresh this README's generated tables.", show_default=False),
    ] = None,
    sweep: Annotated[
        Path | None,
        typer.Option(
            help="A sweep folder whose path figures and table to add.", show_default=False
        ),
    ] = None,
    atlas: Annotated[
        Path | None,
        typer.Option(
            help="An atlas (a sweep with --train-sizes) whose figures and section to add; "
            "--sweep joins it as its largest size.",
            show_default=False,
        ),
    ] = None,
    pruned: Annotated[
        Path | None,
        typer.Option(
            help="Pruned runs (`make prune-study`) whose study to add; their sources are "
            "--sweep's models.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        Device, typer.Option(help="Where the sweep's pruned accuracies are measured.")
    ] = Device.cpu,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures written.")] = False,
    quiet: Quiet = False,
):
    """Rebuild every figure (and, with --readme, its tables) from the models on disk."""
    from regcli.studies.report import report as build

    dirs = model_dirs(models, models_dir)
    total = len(dirs) + (sum(1 for _ in Path(sweep).glob("*/seed-*")) if sweep else 0)
    with model_progress(total, "report", quiet) as advance:
        written = build(
            dirs,
            models_dir=models_dir,
            images_dir=images_dir,
            data_dir=data_dir,
            readme=readme,
            sweep=sweep,
            atlas=atlas,
            pruned=pruned,
            device=device.value,
            advance=advance,
        )
    if json_output:
        print_json({"figures": [str(p) for p in written], "readme": readme and str(readme)})
    tables = f" and the tables in {readme}" if readme else ""
    say(f"wrote {len(written)} figures in {images_dir}{tables}", quiet)


@app.command()
@with_options(SUMMARY_OPTIONS)
def weights(models: ModelsArg = None, *, given: dict):
    """Weight norms, shares of small weights, and their distributions in one figure."""
    from regcli.plots.figures import save_figure, weights_figure
    from regcli.studies.weights import model_weights, weights_table

    out, models_dir, images_dir, json_output, quiet = given.values()

    dirs = model_dirs(models, models_dir)
    labels = unique_labels(dirs, models_dir)
    stats, failed = each_model(dirs, "reading", quiet, lambda d: model_weights(d, labels[d]))
    if stats and not no_figure(failed, quiet):
        figure = summary_figure("weights", images_dir, dirs if models else None, out, models_dir)
        save_figure(weights_figure(stats), figure)
        rows = [{k: v for k, v in s.items() if k != "values"} for s in stats]
        print_json(rows) if json_output else print_line(weights_table(rows))
        say(f"wrote {figure}", quiet)
    exit_if(failed)


def no_figure(failed: int, quiet: bool) -> bool:
    """A summary figure of only some of the models asked for is not drawn: a failed command
    leaves the figures on disk as they were."""
    if failed:
        say(f"no figure written: {failed} of the models could not be read", quiet)
    return bool(failed)
