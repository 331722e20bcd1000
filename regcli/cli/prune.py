"""`regcli prune`: zero the smallest conv weights and measure what is left (no retraining), or
retrain each pruned network with its mask fixed into a model folder of its own (--retrain)."""

from pathlib import Path
from typing import Annotated

import typer

from regcli.cli.app import (
    app,
    command_line,
    continue_hint,
    each_model,
    exit_if,
    print_json,
    print_line,
    say_failures,
)
from regcli.cli.console import TrainingReporter, say, stderr
from regcli.cli.options import (
    BackendOption,
    DataDir,
    DeviceOption,
    Force,
    ImagesDir,
    Jobs,
    JsonFlag,
    ModelsArg,
    ModelsDir,
    OutFigure,
    Quiet,
    Threads,
)
from regcli.cli.studies import no_figure
from regcli.core.config import RETRAIN_LR, Backend, Device, Existing, RunOptions
from regcli.core.errors import Interrupted, UsageError
from regcli.store.layout import USER_FIGURES, check_name, summary_figure, unique_labels
from regcli.store.listing import model_dirs

RETRAIN = "Retraining"  # help panel

Retrain = Annotated[
    int | None,
    typer.Option(
        help="Retrain each pruned network this many epochs with its mask fixed (the pruned "
        "weights stay exactly zero), each into <models-dir>/<name>/<cell>/seed-<k>.",
        show_default=False,
        rich_help_panel=RETRAIN,
    ),
]
Iterative = Annotated[
    int,
    typer.Option(
        help="With --retrain: reach the sparsity in N prune-then-retrain steps, each keeping "
        "the same share of what is left, each retrained --retrain epochs.",
        rich_help_panel=RETRAIN,
    ),
]
RetrainLr = Annotated[
    float,
    typer.Option(
        help="With --retrain: the peak learning rate of each step's schedule (the source's "
        "kind: one-cycle by default).",
        rich_help_panel=RETRAIN,
    ),
]
PrunedName = Annotated[
    str,
    typer.Option(help="With --retrain: the folder under --models-dir.", rich_help_panel=RETRAIN),
]


@app.command()
def prune(
    models: ModelsArg = None,
    sparsity: Annotated[
        str, typer.Option(help="Fractions of conv weights to zero, comma-separated.")
    ] = "0.5,0.7,0.9",
    retrain: Retrain = None,
    iterative: Iterative = 1,
    retrain_lr: RetrainLr = RETRAIN_LR,
    name: PrunedName = "pruned",
    force: Force = False,
    backend: BackendOption = Backend.torch,
    device: DeviceOption = Device.auto,
    jobs: Jobs = None,
    threads: Threads = None,
    out: OutFigure = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = USER_FIGURES,
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Zero the smallest conv weights and measure test accuracy at each level (and the zipped
    ONNX size); with --retrain, retrain each pruned network as a model of its own."""
    from regcli.studies.weights import parse_sparsities

    if retrain is None:
        if iterative != 1 or retrain_lr != RETRAIN_LR:
            raise UsageError("--iterative and --retrain-lr set how to retrain: add --retrain")
        levels = parse_sparsities(sparsity)
        dirs = model_dirs(models, models_dir)
        curves = prune_curves(dirs, levels, backend, models_dir, data_dir, json_output, quiet)
        pruning_figure(curves, dirs, models, out, images_dir, models_dir, quiet)
        return
    if not models:
        raise UsageError("--retrain trains a model per source and sparsity: name the sources")
    check_name(name, models_dir)
    levels = parse_sparsities(sparsity, with_dense=False)
    dirs = model_dirs(models, models_dir)
    options = RunOptions(
        device=device.value,
        jobs=jobs,
        threads=threads,
        models_dir=models_dir,
        images_dir=None,  # no history figure per pruned run
        data_dir=data_dir,
        existing=Existing.force if force else Existing.reuse,
        command=tuple(command_line()),
    )
    results = retrain_pruned(dirs, levels, (retrain, iterative, retrain_lr), name, options, quiet)
    print_json(results) if json_output else print_line(results_table(results))


def prune_curves(dirs, levels, backend, models_dir, data_dir, json_output, quiet) -> list:
    """Accuracy (and zipped ONNX size) of each model at each level, a table row as each ends."""
    from regcli.core.tables import Streaming
    from regcli.data.mnist import load_split
    from regcli.studies.weights import prune_curve

    labels = unique_labels(dirs, models_dir)
    test = load_split(data_dir, "test")
    headers = ["model", *(f"{100 * s:g}% zero" for s in levels)]
    widths = [max(len(label) for label in labels.values())] + [9] * len(levels)
    table = None if json_output else Streaming(headers, widths, print_line)

    def prune_one(model_dir: Path) -> dict:
        curve = prune_curve(
            model_dir,
            levels,
            backend=backend.value,
            test=test,
            label=labels[model_dir],
            sizes=json_output,  # the zipped sizes are --json's
        )
        if table:
            table.row([curve["model"], *(f"{100 * p['accuracy']:.2f}%" for p in curve["points"])])
        return curve

    curves, failed = each_model(dirs, "pruning", quiet, prune_one)
    if json_output:
        print_json(curves)
    if failed:
        no_figure(failed, quiet)
        exit_if(failed)
    return curves


def pruning_figure(curves, dirs, models, out, images_dir, models_dir, quiet) -> None:
    from regcli.plots.figures import pruning_figure as draw
    from regcli.plots.figures import save_figure

    if curves:
        figure = summary_figure("pruning", images_dir, dirs if models else None, out, models_dir)
        save_figure(draw(curves), figure)
        say(f"wrote {figure}", quiet)


def retrain_pruned(dirs, levels, how, name, options: RunOptions, quiet: bool) -> list[dict]:
    """Train (or reuse) every pruned run, export each, and measure it against its source."""
    from regcli.data.mnist import load_split
    from regcli.inference.export import export_model, up_to_date
    from regcli.jobs.pruned_runs import Retraining, prune_requests
    from regcli.jobs.runner import train_job
    from regcli.studies.pruning import pruned_result

    requests = prune_requests(dirs, levels, Retraining(*how), name)
    try:
        with TrainingReporter(quiet, 128, groups="cell") as reporter:
            outcomes = train_job(requests, options, reporter)
    except Interrupted as stopped:
        raise stopped.saying(continue_hint(stopped, automatic=True, versioned=False)) from None
    test = load_split(options.data_dir, "test")
    sources = {o.model_dir: r.start for o, r in zip(outcomes, requests, strict=True)}
    done = [o.model_dir for o in outcomes if not (o.diverged or o.error)]
    labels = unique_labels(done, options.models_dir)

    def finish(model_dir: Path) -> dict:
        if not up_to_date(model_dir):
            export_model(model_dir, data_dir=options.data_dir, command=list(options.command))
        return pruned_result(model_dir, sources[model_dir], test, labels[model_dir])

    results, failed = each_model(done, "exporting", quiet, finish)
    for outcome in outcomes:
        if outcome.diverged:
            stderr.print(f"error: {outcome.divergence()}", markup=False)
    code = say_failures(outcomes)
    exit_if(failed + sum(bool(o.diverged) for o in outcomes) + code, max(code, 1))
    return results


def results_table(results: list[dict]) -> str:
    from regcli.core.tables import render

    headers = ["model", "sparsity", "steps", "pruned %", "retrained %", "zip KB", "dense zip KB"]
    body = [
        [
            r["model"],
            f"{r['sparsity']:g}",
            str(r["steps"]),
            f"{100 * r['pruned_accuracy']:.2f}",
            f"{100 * r['retrained_accuracy']:.2f}",
            f"{r['zipped_bytes'] / 1000:.1f}",
            f"{r['dense_zipped_bytes'] / 1000:.1f}",
        ]
        for r in results
    ]
    return render(headers, body, align="<>>>>>>")
