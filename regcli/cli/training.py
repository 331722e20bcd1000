"""Commands that train: `train` (one model, seeds, variants), `sweep` (a grid), `runs` (what is
there). Each parses, builds a TrainConfig and RunOptions, calls the core, and prints."""

import time
from pathlib import Path
from typing import Annotated

import typer

from regcli.cli.app import (
    app,
    command_line,
    continue_hint,
    exit_if,
    print_json,
    print_line,
    say_failures,
)
from regcli.cli.console import TrainingReporter, model_progress, say, stderr
from regcli.cli.options import (
    OUTPUT,
    RUN,
    RUN_OPTIONS,
    STRENGTHS,
    TRAINING,
    Force,
    JsonFlag,
    ModelsDir,
    existing,
    run_options,
    settings_from,
    typed_here,
    with_options,
)
from regcli.core.config import GRID_DEFAULTS, Grid, TrainConfig
from regcli.core.errors import Interrupted
from regcli.core.tables import clock
from regcli.store.layout import check_name, figure_path, model_label
from regcli.store.listing import State
from regcli.store.settings import config_toml, shown

Resume = Annotated[
    bool,
    typer.Option(
        "--resume", help="Continue an interrupted run (give the same options).", rich_help_panel=RUN
    ),
]
JsonRecords = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the final records as JSON on stdout.", rich_help_panel=OUTPUT
    ),
]
Name = Annotated[
    str | None,
    typer.Option(
        help="Model folder under --models-dir. Default: the mode (none, l1, l2, l1_l2), or "
        "the next free <mode>-1, <mode>-2, ... if that one is taken.",
        show_default=False,
        rich_help_panel=RUN,
    ),
]
Variants = Annotated[
    str | None,
    typer.Option(
        help="Train several variants at once, e.g. none,l1,l2,l1_l2, each into "
        "its own folder, <variant>/, with its strengths from --l1 / --weight-decay, reusing "
        "finished ones of the same settings and resuming interrupted ones.",
        show_default=False,
        rich_help_panel=RUN,
    ),
]
Seeds = Annotated[
    int | None,
    typer.Option(
        help="Train seeds 0..N-1 into <name>/seed-<k>/, reusing finished ones of the same "
        "settings and resuming interrupted ones.",
        show_default=False,
        rich_help_panel=RUN,
    ),
]
GRID = "Grid"  # the sweep's help panel for its grid
L1s = Annotated[
    str,
    typer.Option(
        help="L1 strengths: 0,1e-5,1e-4 or a log range low:high:count.",
        show_default=GRID_DEFAULTS["l1"].replace(",", ", "),  # so that it wraps at 80 columns
        rich_help_panel=GRID,
    ),
]
WeightDecays = Annotated[
    str,
    typer.Option(
        help="Weight decay strengths, the same forms.",
        show_default=GRID_DEFAULTS["weight_decay"].replace(",", ", "),
        rich_help_panel=GRID,
    ),
]
GridOption = Annotated[
    Grid,
    typer.Option(
        help="paths: the L1 path and the L2 path; product: every combination.",
        rich_help_panel=GRID,
    ),
]
TrainSizes = Annotated[
    str | None,
    typer.Option(
        help="Training-set sizes, e.g. 500,1000,5000: one path per size, each in "
        "<name>/size-<n>/ (class-balanced subsets, shared by the cells of a seed).",
        show_default=False,
        rich_help_panel=GRID,
    ),
]
CellSeeds = Annotated[int, typer.Option(help="Seeds 0..N-1 per cell.", min=1, rich_help_panel=GRID)]
SweepName = Annotated[
    str, typer.Option(help="Sweep folder under --models-dir.", rich_help_panel=RUN)
]
Retrain = Annotated[
    bool,
    typer.Option("--force", help="Retrain cells that are already there.", rich_help_panel=RUN),
]
DryRun = Annotated[
    bool,
    typer.Option(
        help="Print the cells, what would be trained or reused, and a time estimate.",
        rich_help_panel=OUTPUT,
    ),
]
ReportOnly = Annotated[
    bool,
    typer.Option(
        "--report",
        help="No training: the path figures and table from the models on disk.",
        rich_help_panel=OUTPUT,
    ),
]
DEFAULT_GRID = Grid(GRID_DEFAULTS["grid"])


@app.command()
@with_options(STRENGTHS, TRAINING, RUN_OPTIONS)
def train(
    ctx: typer.Context,
    name: Name = None,
    variants: Variants = None,
    seeds: Seeds = None,
    force: Force = False,
    resume: Resume = False,
    json_output: JsonRecords = False,
    *,
    given: dict,
):
    """Train models and write their checkpoints, metrics and history plots."""
    settings, _ = settings_from(ctx, given)
    base = TrainConfig.from_dict(settings, "settings")
    if given["print_config"]:
        title = "regcli train --config <this file>"
        print_line(
            config_toml(shown(base.as_dict()), title=title) + f"# length: {base.length_text}"
        )
        return
    several = seeds is not None or variants is not None  # reuse, resume and train as needed
    folder = existing(force=force, resume=resume, reuse=several)
    if name is not None:
        check_name(name, given["models_dir"])  # before PyTorch's seconds of import
    from regcli.jobs.runner import train_job
    from regcli.jobs.runs import requests_for

    chosen = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    requests = requests_for(base, name, chosen, seeds)
    versioned = name is None and not chosen
    options = run_options(given, folder, command_line(), versioned=versioned)
    quiet = given["quiet"]
    started = time.perf_counter()
    try:
        with TrainingReporter(quiet, base.batch_size) as reporter:
            outcomes = train_job(requests, options, reporter)
    except Interrupted as stopped:
        message = continue_hint(stopped, automatic=several, versioned=versioned)
        raise stopped.saying(message) from None
    wall = time.perf_counter() - started
    report_outcomes(outcomes, json_output, quiet, options.images_dir, wall)


def report_outcomes(outcomes, json_output, quiet, images_dir: Path | None, wall: float) -> None:
    """'saved' lines (stderr), the final records (--json), one error line per divergence."""
    from regcli.jobs.runner import Done

    done = [o for o in outcomes if o.action in (Done.trained, Done.resumed)]
    for outcome in done:
        say(closing_line(outcome), quiet)
        if images_dir is not None:
            figure = figure_path(images_dir, model_label(outcome.model_dir), "history")
            say(f"wrote {figure}", quiet)
    if len(done) > 1:
        seconds = sum(r["seconds"] for o in done for r in o.history)
        say(
            f"{len(done)} models trained: {clock(seconds)} of training in all, {clock(wall)} "
            "from start to end",
            quiet,
        )
    if json_output:
        print_json([o.record() for o in outcomes])
    lines = [o.divergence() for o in outcomes if o.diverged]
    for line in lines:
        stderr.print(f"error: {line}", markup=False)
    code = say_failures(outcomes)
    if lines or code:
        raise typer.Exit(max(code, 1))


def closing_line(outcome) -> str:
    """A trained model's last word: where it is, its final and best test accuracy, its time."""
    history = outcome.history
    final = 100 * history[-1]["test_accuracy"]
    best = max(history, key=lambda r: r["test_accuracy"])
    seconds = sum(r["seconds"] for r in history)
    return (
        f"saved {outcome.model_dir}: test acc {final:.2f}% (best {100 * best['test_accuracy']:.2f}%"
        f" in epoch {best['epoch']}), {clock(seconds)} of training"
    )


@app.command()
def runs(
    models_dir: ModelsDir = Path("models"),
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Only runs whose folder under --models-dir matches this shell pattern, e.g. "
            "'sweep/*' or 'pruned/*/seed-0'.",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        State | None, typer.Option(help="Only runs in this state.", show_default=False)
    ] = None,
    json_output: JsonFlag = False,
):
    """List the runs under --models-dir: settings, seed, epochs, state, final accuracy, when
    each started and how long it took (no PyTorch needed, but for an interrupted run)."""
    from regcli.store.listing import list_runs, runs_table

    rows = list_runs(models_dir, name, status)
    if json_output:
        print_json(rows)
    elif rows:
        print_line(runs_table(rows))
    else:
        say(f"no runs under {models_dir}; train one with `regcli train`")


@app.command()
@with_options(TRAINING, RUN_OPTIONS)
def sweep(
    ctx: typer.Context,
    l1: L1s = GRID_DEFAULTS["l1"],
    weight_decay: WeightDecays = GRID_DEFAULTS["weight_decay"],
    grid: GridOption = DEFAULT_GRID,
    seeds: CellSeeds = GRID_DEFAULTS["seeds"],
    train_sizes: TrainSizes = GRID_DEFAULTS["train_sizes"],
    name: SweepName = "sweep",
    force: Retrain = False,
    dry_run: DryRun = False,
    report_only: ReportOnly = False,
    json_output: JsonFlag = False,
    *,
    given: dict,
):
    """Train a grid of regularization strengths x seeds and draw the regularization path."""
    from regcli.jobs import sweep as grid_search

    models_dir, quiet = given["models_dir"], given["quiet"]
    check_name(name, models_dir)  # one plain folder under --models-dir, as for train
    lists = "the [sweep] table, as a list of strengths"
    elsewhere = {
        "l1": lists,
        "weight_decay": lists,
        "train_size": "the [sweep] table's train_sizes",
    }
    settings, tables = settings_from(ctx, given, tables=("sweep",), elsewhere=elsewhere)
    grid_options = {
        "l1": l1,
        "weight_decay": weight_decay,
        "grid": grid.value,
        "seeds": seeds,
        "train_sizes": train_sizes,
    }
    typed = {k: v for k, v in grid_options.items() if typed_here(ctx, k)}
    source = str(given["config"])
    job = grid_search.plan(name, settings, tables.get("sweep", {}), typed, source)
    folder = existing(force=force, resume=False, reuse=True)
    if given["print_config"]:
        print_line(job.config_text())
    elif report_only:
        sweep_report(job, given, json_output)
    elif dry_run:
        options = run_options(given, folder, [])
        preview = grid_search.preview(job, options)
        print_json(preview) if json_output else print_line(grid_search.preview_text(preview))
    else:
        options = run_options(given, folder, command_line(), images_dir=None)
        try:
            with TrainingReporter(quiet, job.base.batch_size, groups="cell") as reporter:
                outcomes = grid_search.train(job, options, reporter)
        except Interrupted as stopped:  # finished cells are kept, interrupted ones resume
            message = continue_hint(stopped, automatic=True, versioned=False)
            raise stopped.saying(message) from None
        say(job.summary_line(models_dir, outcomes), quiet)
        if json_output:
            print_json([o.record() for o in outcomes])
        exit_if(code := say_failures(outcomes), code)
        say(f"the path: regcli sweep --name {name} --report", quiet)


def sweep_report(job, given: dict, json_output: bool) -> None:
    """`regcli sweep --report`: the path's table (or JSON) and its figures, from disk."""
    from regcli.studies.atlas import is_atlas
    from regcli.studies.path import cells_json, path_table
    from regcli.studies.report import sweep_report as build

    folder = given["models_dir"] / job.name
    if is_atlas(folder):
        return atlas_report(folder, given, json_output)
    total = sum(1 for _ in folder.glob("*/seed-*"))
    with model_progress(total, "reading the sweep", given["quiet"]) as advance:
        cells, written = build(
            folder,
            images_dir=given["images_dir"],
            data_dir=given["data_dir"],
            device=given["device"].value,
            advance=advance,
        )
    print_json(cells_json(cells)) if json_output else print_line(path_table(cells))
    for figure in written:
        say(f"wrote {figure}", given["quiet"])


def atlas_report(folder: Path, given: dict, json_output: bool) -> None:
    """`regcli sweep --report` on an atlas (a sweep with --train-sizes): its table per size
    (or JSON) and its two figures, from disk."""
    from regcli.studies import atlas_report as atlas_text
    from regcli.studies.atlas import read_atlas
    from regcli.studies.timings import study_runs

    found = read_atlas(folder)
    written = atlas_text.atlas_figures(found, folder.name, given["images_dir"])
    if json_output:
        print_json(atlas_text.atlas_json(found))
    else:
        print_line(atlas_text.atlas_table(found))
        for sentence in atlas_text.findings(found, study_runs(found.folders)):
            print_line(f"- {sentence}")
    for figure in written:
        say(f"wrote {figure}", given["quiet"])
