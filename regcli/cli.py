"""The command line: thin Typer commands that parse, build a config, call the core and print.

Core modules are imported inside the commands that need them, and only those load PyTorch:
`evaluate`, `misclassified` and `predict` with `--backend onnx` start without it.

Errors from the core (RegcliError, UsageError) and from argument parsing become one line on
stderr and an exit code: 2 for bad usage, 1 for a runtime failure. REGCLI_DEBUG=1 shows the
full traceback instead. Results go to stdout; progress, "wrote ..." lines and errors to stderr.
"""

import os
import shlex
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from regcli import __version__
from regcli.config import (
    HELP,
    Backend,
    Device,
    Grid,
    RegScope,
    Schedule,
    TrainConfig,
    config_toml,
)
from regcli.console import TrainingReporter, model_progress, say, stderr, stdout
from regcli.errors import Interrupted, RegcliError, UsageError
from regcli.files import to_json
from regcli.layout import (
    CHECKPOINT_NAME,
    check_name,
    figure_paths,
    folders_holding,
    model_dirs,
    model_label,
    summary_figure,
    unique_labels,
)
from regcli.settings import read_settings
from regcli.text import terminal_safe

DEBUG_ENV = "REGCLI_DEBUG"
invocation: ContextVar[tuple[str, ...]] = ContextVar("invocation", default=())  # args as typed


class OneLineErrors(TyperGroup):
    """Report every expected failure as `error: ...` on one line, without a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        invocation.set(tuple(args))
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # bare `regcli`: the help was shown
                code = 0
            else:
                code = fail(error.format_message(), error, getattr(error, "exit_code", 2))
        except (RegcliError, OSError) as error:
            code = fail(str(error), error, getattr(error, "exit_code", 1))
        except KeyboardInterrupt as error:
            code = fail("stopped by Ctrl-C", error, 130, "interrupted")
        except typer.Abort:
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, error: BaseException, code: int, prefix: str | None = None) -> int:
    if os.environ.get(DEBUG_ENV):
        raise error
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    line = line.replace("Value error, ", "")  # the parser's own wording, not the user's
    line = terminal_safe(line)  # names from disk cannot forge output or reach the terminal
    stderr.print(f"{prefix or getattr(error, 'prefix', 'error')}: {line}", markup=False)
    return code


def _help_type(original):
    """Flags show as flags in --help and a list of paths as <path>... (not <bool>, <list[Path]>)."""

    def display_type(self, ctx):
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        label = original(self, ctx)
        return label.replace("list[Path]", "path").replace("<Path>", "<path>") if label else label

    return display_type


for _kind in (TyperOption, TyperArgument):
    if hasattr(_kind, "display_type_rich"):  # Typer >= 0.2x shows a type column in --help
        _kind.display_type_rich = _help_type(_kind.display_type_rich)

app = typer.Typer(
    cls=OneLineErrors,
    help="What do L1 and L2 regularization do to a small CNN? Train, compare, export MNIST models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def complete_models(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for model arguments: the folders under --models-dir that hold a model."""
    root = Path(ctx.params.get("models_dir") or "models")
    found = folders_holding(root, (CHECKPOINT_NAME,)) if root.is_dir() else []
    return [str(p) for p in found if str(p).startswith(incomplete)]


# --- options shared by several commands --------------------------------------------------------

ModelsDir = Annotated[Path, typer.Option(help="Where models live: <models-dir>/<name>/.")]
ImagesDir = Annotated[Path, typer.Option(help="Where figures are written.")]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="MNIST IDX files (also in <dir>/MNIST/raw). Default: $REGCLI_DATA_DIR, else ./data.",
        show_default=False,
    ),
]
ModelsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Model folders (a folder of seed-<k> folders stands for its seeds). "
        "Default: every model under --models-dir.",
        show_default=False,
        autocompletion=complete_models,
    ),
]
ModelArg = Annotated[
    Path, typer.Argument(help="A model folder (or its model.pt).", autocompletion=complete_models)
]
BackendOption = Annotated[Backend, typer.Option(help="Inference backend.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or 'wrote' lines.")]
OutFigure = Annotated[
    Path | None,
    typer.Option(
        help="Figure path. Default: the study's name for every model, else a name derived "
        "from the models given.",
        show_default=False,
    ),
]
DeviceOption = Annotated[Device, typer.Option(help="Training device.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings from a TOML file (see --print-config) or a saved model folder; "
        "options given on the command line win.",
        show_default=False,
    ),
]
PrintConfig = Annotated[
    bool, typer.Option("--print-config", help="Print the resolved settings as TOML and exit.")
]
GroupSize = Annotated[
    int | None,
    typer.Option(
        help="Models trained at once as one grouped network. Default: all that fit on a GPU, "
        "one at a time on a CPU (measured faster there).",
        show_default=False,
        min=1,
    ),
]
Deterministic = Annotated[
    bool,
    typer.Option(
        help="On a GPU: deterministic cuDNN kernels (the same seed gives the same numbers, and "
        "--resume continues bit for bit); --no-deterministic lets cuDNN pick the fastest.",
    ),
]


def _setting(name: str, kind=float, **extra):
    """A TrainConfig field as an option, with the field's help (meaning and unit)."""
    text = HELP[name][:1].upper() + HELP[name][1:] + "."
    return Annotated[kind, typer.Option(help=text, **extra)]


Epochs = _setting("epochs", int)
BatchSize = _setting("batch_size", int)
LearningRate = _setting("lr")
Momentum = _setting("momentum")
ScheduleOption = _setting("schedule", Schedule)
Rotation = _setting("max_rotation")
DropoutOption = _setting("dropout")
Scope = _setting("reg_scope", RegScope)
LimitTrain = _setting("limit_train", int | None, show_default=False)
LimitTest = _setting("limit_test", int | None, show_default=False)
TRAINING_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "schedule",
    "max_rotation",
    "dropout",
    "reg_scope",
    "limit_train",
    "limit_test",
)


def resolved_config(
    ctx: typer.Context,
    config_file: Path | None,
    given: dict,
    tables: tuple[str, ...] = (),
    elsewhere: dict[str, str] | None = None,
) -> tuple[dict, dict]:
    """TrainConfig settings: the defaults, then --config, then the options typed on the command
    line. Returns (settings, the file's extra tables)."""
    from_file, extra = read_settings(config_file, tables, elsewhere) if config_file else ({}, {})
    try:  # the file's own settings, checked on their own: an error names the file
        TrainConfig.from_dict({**TrainConfig().as_dict(), **from_file})
    except UsageError as error:
        raise UsageError(f"{config_file}: {error}") from None
    typed = {k: getattr(v, "value", v) for k, v in given.items() if typed_here(ctx, k)}
    return {**TrainConfig().as_dict(), **from_file, **typed}, extra


def typed_here(ctx: typer.Context, name: str) -> bool:
    """Whether an option was given on the command line (not left at its default)."""
    return ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")


def again(args: list[str], *, name: str | None = None, add: tuple[str, ...] = ()) -> str:
    """The command as typed, without --force/--resume (and --name, if a name is given)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--force", "--resume"):
            continue
        elif name and arg == "--name":
            skip = True
        elif not (name and arg.startswith("--name=")):
            kept.append(arg)
    return shlex.join(["regcli", *kept, *(["--name", name] if name else []), *add])


def print_json(data) -> None:
    stdout.print(to_json(data), markup=False, highlight=False, soft_wrap=True)


# --- commands ---------------------------------------------------------------------------------


def _version(value: bool):
    if value:
        stdout.print(f"regcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
):
    """regcli: train an MNIST CNN with none, L1, L2 or L1+L2 regularization and compare them."""


@app.command()
def train(
    ctx: typer.Context,
    l1: _setting("l1") = 0.0,
    weight_decay: _setting("weight_decay") = 0.0,
    name: Annotated[
        str | None,
        typer.Option(
            help="Model folder under --models-dir. Default: the mode (none, l1, l2, l1_l2), or "
            "the next free <mode>-1, <mode>-2, ... if that one is taken.",
            show_default=False,
        ),
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(
            help="Train several variants at once, e.g. none,l1,l2,l1_l2, each into "
            "<models-dir>/<variant>/ with its strengths from --l1 / --weight-decay.",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            help="Train seeds 0..N-1 into <name>/seed-<k>/, reusing finished ones of the same "
            "settings and resuming interrupted ones.",
            show_default=False,
        ),
    ] = None,
    seed: _setting("seed", int) = TrainConfig.seed,
    epochs: Epochs = TrainConfig.epochs,
    batch_size: BatchSize = TrainConfig.batch_size,
    lr: LearningRate = TrainConfig.lr,
    momentum: Momentum = TrainConfig.momentum,
    schedule: ScheduleOption = Schedule.onecycle,
    max_rotation: Rotation = TrainConfig.max_rotation,
    dropout: DropoutOption = TrainConfig.dropout,
    reg_scope: Scope = RegScope.weights,
    limit_train: LimitTrain = None,
    limit_test: LimitTest = None,
    device: DeviceOption = Device.auto,
    group_size: GroupSize = None,
    deterministic: Deterministic = True,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    data_dir: DataDir = None,
    force: Annotated[
        bool, typer.Option(help="Replace finished models (or abandon interrupted runs) there.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run (give the same options).")
    ] = False,
    config: ConfigFile = None,
    print_config: PrintConfig = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the final records as JSON on stdout.")
    ] = False,
    quiet: Quiet = False,
):
    """Train models and write their checkpoints, metrics and history plots."""
    given = {k: v for k, v in locals().items() if k in TrainConfig().as_dict()}
    settings, _ = resolved_config(ctx, config, given)
    base = TrainConfig.from_dict(settings, "settings")
    if print_config:
        stdout.print(
            config_toml(base.as_dict(), title="regcli train --config <this file>"),
            markup=False,
            end="",
        )
        return
    if force and resume:
        raise UsageError("--force and --resume contradict each other; choose one")
    if resume and seeds is not None:
        raise UsageError("--seeds resumes interrupted seeds by itself; drop --resume")
    if name is not None:
        check_name(name, models_dir)  # before PyTorch's seconds of import
    from regcli.runs import requests_for, train_job

    chosen = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    requests = requests_for(base, name, chosen, seeds)
    args = list(invocation.get())
    try:
        with TrainingReporter(quiet, base.batch_size) as reporter:
            outcomes = train_job(
                requests,
                models_dir=models_dir,
                images_dir=images_dir,
                data_dir=data_dir,
                auto_name=name is None and not chosen,
                force=force,
                resume=resume,
                device_name=device.value,
                group_size=group_size,
                deterministic=deterministic,
                reporter=reporter,
                command=["regcli", *args],
                announce=lambda message: say(message, quiet),
            )
    except Interrupted as stopped:
        automatic = seeds is not None  # seed groups resume by themselves
        named = stopped.folder if name is None and not chosen else None
        if automatic:
            hint = f"continue with: {again(args, name=named)}"
        elif getattr(stopped, "epochs_saved", 0):
            hint = f"resume with: {again(args, name=named, add=('--resume',))}"
        else:
            extra = ("--force",) if stopped.needs_force else ()
            hint = f"start again with: {again(args, name=named, add=extra)}"
        stopped.args = (f"{stopped}; {hint}",)
        raise
    report_outcomes(outcomes, json_output, quiet, images_dir)


def report_outcomes(outcomes, json_output: bool, quiet: bool, images_dir: Path | None) -> None:
    """'saved' lines (stderr), the final records (--json), one error line per divergence."""
    for outcome in outcomes:
        if outcome.action in ("trained", "resumed"):
            final = 100 * outcome.history[-1]["test_accuracy"]
            say(f"saved {outcome.model_dir} (test acc {final:.2f}%)", quiet)
    if images_dir is not None and any(o.action in ("trained", "resumed") for o in outcomes):
        say(f"wrote their history figures in {images_dir}", quiet)
    if json_output:
        print_json([o.record() for o in outcomes])
    lines = [o.divergence() for o in outcomes if o.diverged]
    for line in lines:
        stderr.print(f"error: {line}", markup=False)
    if lines:
        raise typer.Exit(1)


@app.command()
def summary(json_output: JsonFlag = False):
    """Print the network layer by layer: output shape, parameters, receptive field."""
    from regcli.model import Net, count_parameters, layer_summary, layer_table

    rows = layer_summary(Net())
    if json_output:
        print_json({"layers": rows, "parameters": count_parameters(Net())})
    else:
        print_line(layer_table(rows))


def each_model(dirs: list[Path], what: str, quiet: bool, work) -> tuple[list, int]:
    """work(model_dir) for every model, with a bar of models done / total and time left. A model
    that fails is one error line and the others go on (a lone model's error is the command's).
    Returns the results and how many failed."""
    results, failed = [], 0
    with model_progress(len(dirs), what, quiet) as advance:
        for model_dir in dirs:
            try:
                results.append(work(model_dir))
            except RegcliError as error:
                if len(dirs) == 1:
                    raise
                failed += 1
                stderr.print(f"error: {terminal_safe(str(error))}", markup=False)
            finally:
                advance(model_label(model_dir))
    return results, failed


def exit_if(failed: int) -> None:
    if failed:
        raise typer.Exit(1)


@app.command()
def export(
    models: ModelsArg = None,
    models_dir: ModelsDir = Path("models"),
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option(help="Export even if model.onnx is up to date.")] = False,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Export models to ONNX (model.onnx beside model.pt), checked against PyTorch."""
    from regcli.backends import is_current
    from regcli.export import export_model

    def export_one(model_dir: Path) -> dict:
        target = Path(model_dir) / "model.onnx"
        if is_current(model_dir) and not force:
            say(f"up to date: {target}", quiet)
            return {"model": str(model_dir), "onnx": str(target), "action": "up to date"}
        command = ["regcli", *invocation.get()]
        say(f"exported {export_model(model_dir, data_dir=data_dir, command=command)}", quiet)
        return {"model": str(model_dir), "onnx": str(target), "action": "exported"}

    done, failed = each_model(model_dirs(models, models_dir), "exporting", quiet, export_one)
    if json_output:
        print_json(done)
    exit_if(failed)


@app.command()
def evaluate(
    models: ModelsArg = None,
    backend: BackendOption = Backend.torch,
    models_dir: ModelsDir = Path("models"),
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Test loss, accuracy and per-class accuracy on all 10,000 test images (--json: and the
    confusion matrix)."""
    from regcli.data import load_split
    from regcli.evaluate import evaluate_model
    from regcli.tables import Streaming

    dirs = model_dirs(models, models_dir)
    test = load_split(data_dir, "test")
    widths = [max(len(model_label(d)) for d in dirs), 7, 9, 8, 13, 9]
    headers = ["model", "backend", "accuracy", "loss", "correct", "images/s"]
    table = None if json_output else Streaming(headers, widths, print_line)

    def evaluate_one(model_dir: Path) -> dict:
        r = evaluate_model(model_dir, backend=backend.value, test=test)[0]
        if table:  # each row as soon as it is scored
            table.row(
                [
                    r["model"],
                    r["backend"],
                    f"{100 * r['accuracy']:.2f}%",
                    f"{r['loss']:.4f}",
                    f"{r['correct']:,}/{r['total']:,}",
                    f"{r['images_per_second']:,.0f}",
                ]
            )
            per_class = "  ".join(f"{d}:{100 * a:.1f}" for d, a in enumerate(r["per_class"]))
            print_line(f"  per class (%): {per_class}")
        return r

    results, failed = each_model(dirs, "evaluating", quiet, evaluate_one)
    if json_output:
        print_json(results)
    exit_if(failed)


def print_line(text: str) -> None:
    """Results on stdout, terminal-safe (tables hold names read from disk); tabs and newlines
    are the output's own."""
    lines = str(text).split("\n")
    safe = "\n".join("\t".join(map(terminal_safe, line.split("\t"))) for line in lines)
    stdout.print(safe, markup=False, highlight=False)


@app.command()
def misclassified(
    models: ModelsArg = None,
    backend: BackendOption = Backend.torch,
    count: Annotated[int, typer.Option(help="How many digits to show.", min=1, max=400)] = 25,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Figure path (one model only). Default: <images-dir>/<name>_misclassified.png.",
            show_default=False,
        ),
    ] = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Plot misclassified test digits with true label, prediction and confidence."""
    from regcli.data import load_split
    from regcli.evaluate import plot_misclassified

    dirs = model_dirs(models, models_dir)
    if out is not None and len(dirs) > 1:
        raise UsageError(
            f"--out names one file but {len(dirs)} models were given; give one "
            "model, or use --images-dir"
        )
    test = load_split(data_dir, "test")
    targets = figure_paths(images_dir, dirs, "misclassified", models_dir)  # one per model

    def plot_one(model_dir: Path) -> dict:
        target = out or targets[model_dir]
        rows = plot_misclassified(
            model_dir, backend=backend.value, test=test, count=count, out=target
        )
        say(f"wrote {target} ({len(rows)} digits)", quiet)
        return {"model": model_label(model_dir), "figure": str(target), "misclassified": rows}

    listing, failed = each_model(dirs, "plotting", quiet, plot_one)
    if json_output:
        print_json(listing)
    exit_if(failed)


@app.command()
def predict(
    model: ModelArg,
    paths: Annotated[
        list[Path],
        typer.Argument(help="Image files (PNG, JPEG, BMP), folders of them, or .npy arrays."),
    ],
    backend: BackendOption = Backend.torch,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write every row to a .csv or .json file.", show_default=False),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON lines (one object per input) to stdout.")
    ] = False,
):
    """Predict digits in real images; exit code 1 if any input could not be read."""
    import json

    from regcli.backends import open_predictor
    from regcli.predict import check_out, predict_files
    from regcli.text import terminal_safe

    check_out(out)  # a bad --out before the model is even opened
    predictor = open_predictor(model, backend=backend.value)

    def show(row: dict) -> None:
        if json_output:
            print_line(json.dumps(row, allow_nan=False))
        else:
            top3 = "  ".join(f"{c}:{p:.3f}" for c, p in row["top3"])
            print_line(
                f"{terminal_safe(row['path'])}\t{row['prediction']}\t"
                f"{row['probability']:.4f}\t{top3}"
            )

    def failure(path: str, message: str) -> None:
        stderr.print(f"error: {terminal_safe(message)}", markup=False)

    _, failed = predict_files(predictor, paths, out, on_row=show, on_failure=failure)
    if out is not None:
        say(f"wrote {out}")
    exit_if(failed)


@app.command()
def compare(
    models: ModelsArg = None,
    markdown: Annotated[bool, typer.Option(help="Print Markdown tables.")] = False,
    out: OutFigure = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Compare models: test accuracy and loss curves in one figure, and summary tables."""
    from regcli import compare as comparison
    from regcli.plots import compare_figure, save_figure

    dirs = model_dirs(models, models_dir)
    labels = unique_labels(dirs, models_dir)
    rows, failed = each_model(dirs, "reading", quiet, lambda d: comparison.summarize(d, labels[d]))
    if rows:
        figure = summary_figure("compare", images_dir, dirs if models else None, out, models_dir)
        save_figure(compare_figure(comparison.series(rows)), figure)
        if json_output:
            print_json(comparison.as_json(rows))
        else:
            print_line(comparison.comparison_tables(rows, markdown))
        say(f"wrote {figure}", quiet)
    exit_if(failed)


@app.command()
def report(
    models: ModelsArg = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
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
    device: DeviceOption = Device.cpu,
    json_output: Annotated[bool, typer.Option("--json", help="Print the figures written.")] = False,
    quiet: Quiet = False,
):
    """Rebuild every figure (and, with --readme, its tables) from the models on disk."""
    from regcli.report import report as build

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
            device=device.value,
            advance=advance,
        )
    if json_output:
        print_json({"figures": [str(p) for p in written], "readme": readme and str(readme)})
    tables = f" and the tables in {readme}" if readme else ""
    say(f"wrote {len(written)} figures in {images_dir}{tables}", quiet)


@app.command()
def weights(
    models: ModelsArg = None,
    out: OutFigure = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Weight norms, shares of small weights, and their distributions in one figure."""
    from regcli.plots import save_figure, weights_figure
    from regcli.weights import model_weights, weights_table

    dirs = model_dirs(models, models_dir)
    stats, failed = each_model(dirs, "reading", quiet, model_weights)
    if stats:
        figure = summary_figure("weights", images_dir, dirs if models else None, out, models_dir)
        save_figure(weights_figure(stats), figure)
        rows = [{k: v for k, v in s.items() if k != "values"} for s in stats]
        print_json(rows) if json_output else print_line(weights_table(rows))
        say(f"wrote {figure}", quiet)
    exit_if(failed)


@app.command()
def prune(
    models: ModelsArg = None,
    sparsity: Annotated[
        str, typer.Option(help="Fractions of conv weights to zero, comma-separated.")
    ] = "0.5,0.7,0.9",
    backend: BackendOption = Backend.torch,
    out: OutFigure = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Zero the smallest conv weights (no retraining) and measure test accuracy at each level."""
    from regcli.data import load_split
    from regcli.plots import pruning_figure, save_figure
    from regcli.tables import Streaming
    from regcli.weights import parse_sparsities, prune_curve

    levels = parse_sparsities(sparsity)
    dirs = model_dirs(models, models_dir)
    test = load_split(data_dir, "test")
    headers = ["model", *(f"{100 * s:g}% zero" for s in levels)]
    widths = [max(len(model_label(d)) for d in dirs)] + [9] * len(levels)
    table = None if json_output else Streaming(headers, widths, print_line)

    def prune_one(model_dir: Path) -> dict:
        curve = prune_curve(model_dir, levels, backend=backend.value, test=test)
        if table:
            table.row([curve["model"], *(f"{100 * p['accuracy']:.2f}%" for p in curve["points"])])
        return curve

    curves, failed = each_model(dirs, "pruning", quiet, prune_one)
    if curves:
        figure = summary_figure("pruning", images_dir, dirs if models else None, out, models_dir)
        save_figure(pruning_figure(curves), figure)
        say(f"wrote {figure}", quiet)
    if json_output:
        print_json(curves)
    exit_if(failed)


@app.command()
def runs(
    models_dir: ModelsDir = Path("models"),
    json_output: JsonFlag = False,
):
    """List the runs under --models-dir: settings, seed, epochs, state and final accuracy."""
    from regcli.runs import list_runs, runs_table

    rows = list_runs(models_dir)
    if json_output:
        print_json(rows)
    elif rows:
        print_line(runs_table(rows))
    else:
        say(f"no runs under {models_dir}; train one with `regcli train`")


@app.command()
def sweep(
    ctx: typer.Context,
    l1: Annotated[
        str,
        typer.Option(help="L1 strengths: 0,1e-5,1e-4 or a log range low:high:count."),
    ] = "0,1e-6,3e-6,1e-5,3e-5,1e-4,3e-4,1e-3",
    weight_decay: Annotated[
        str, typer.Option(help="Weight decay strengths, the same forms.")
    ] = "0,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3",
    grid: Annotated[
        Grid,
        typer.Option(help="paths: the L1 path and the L2 path; product: every combination."),
    ] = Grid.paths,
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1 per cell.", min=1)] = 5,
    name: Annotated[str, typer.Option(help="Sweep folder under --models-dir.")] = "sweep",
    epochs: Epochs = TrainConfig.epochs,
    batch_size: BatchSize = TrainConfig.batch_size,
    lr: LearningRate = TrainConfig.lr,
    momentum: Momentum = TrainConfig.momentum,
    schedule: ScheduleOption = Schedule.onecycle,
    max_rotation: Rotation = TrainConfig.max_rotation,
    dropout: DropoutOption = TrainConfig.dropout,
    reg_scope: Scope = RegScope.weights,
    limit_train: LimitTrain = None,
    limit_test: LimitTest = None,
    device: DeviceOption = Device.auto,
    group_size: GroupSize = None,
    deterministic: Deterministic = True,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option(help="Retrain cells that are already there.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(help="Print the cells, what would be trained or reused, and a time estimate."),
    ] = False,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report", help="No training: the path figures and table from the models on disk."
        ),
    ] = False,
    config: ConfigFile = None,
    print_config: PrintConfig = False,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Train a grid of regularization strengths x seeds and draw the regularization path."""
    from regcli import sweep as grid_search

    check_name(name, models_dir)  # one plain folder under --models-dir, as for train
    given = {k: v for k, v in locals().items() if k in TRAINING_OPTIONS}
    lists = "the [sweep] table, as a list of strengths"
    settings, tables = resolved_config(
        ctx, config, given, tables=("sweep",), elsewhere={"l1": lists, "weight_decay": lists}
    )
    typed = {
        k: v
        for k, v in dict(l1=l1, weight_decay=weight_decay, grid=grid.value, seeds=seeds).items()
        if typed_here(ctx, k)
    }
    l1s, decays, grid, seeds = grid_search.resolve_grid(
        typed,
        tables.get("sweep", {}),
        defaults=dict(l1=l1, weight_decay=weight_decay, grid=grid.value, seeds=seeds),
        source=str(config),
    )
    base = TrainConfig.from_dict({**settings, "l1": 0.0, "weight_decay": 0.0}, "settings")
    if print_config:
        print_line(grid_search.config_text(base, l1s, decays, grid, seeds))
        return
    if report_only:
        from regcli.report import sweep_report
        from regcli.strength_path import path_table

        total = sum(1 for _ in (models_dir / name).glob("*/seed-*"))
        with model_progress(total, "reading the sweep", quiet) as advance:
            cells, written = sweep_report(
                models_dir / name,
                images_dir=images_dir,
                data_dir=data_dir,
                device=device.value,
                advance=advance,
            )
        print_json(cells) if json_output else print_line(path_table(cells))
        for figure in written:
            say(f"wrote {figure}", quiet)
        return
    cells = grid_search.grid_cells(l1s, decays, grid)
    requests = grid_search.sweep_requests(base, name, cells, seeds)
    if dry_run:
        plan = grid_search.preview(requests, models_dir, force=force, device=device.value)
        print_json(plan) if json_output else print_line(grid_search.preview_text(plan))
        return
    args = list(invocation.get())
    try:
        with TrainingReporter(quiet, base.batch_size) as reporter:
            outcomes = grid_search.train_sweep(
                requests,
                models_dir=models_dir,
                data_dir=data_dir,
                device_name=device.value,
                group_size=group_size,
                deterministic=deterministic,
                force=force,
                reporter=reporter,
                command=["regcli", *args],
                on_cell_done=lambda cell, done, total: reporter.status(
                    f"cell {cell} done ({done}/{total})"
                ),
                announce=lambda message: say(message, quiet),
            )
    except Interrupted as stopped:  # finished cells are kept, interrupted ones resume
        stopped.args = (f"{stopped}; continue with: {again(args)}",)
        raise
    say(grid_search.summary_line(models_dir / name, outcomes, len(cells), seeds), quiet)
    if json_output:
        print_json([o.record() for o in outcomes])
    say(f"the path: regcli sweep --name {name} --report", quiet)


def main():
    app()
