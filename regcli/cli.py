"""The command line: thin Typer commands that build plain objects and call the core.

Core modules are imported inside the commands that need them, and only those load PyTorch:
`evaluate --backend onnx` and `predict --backend onnx` start without it.

Errors from the core (RegcliError, UsageError) and from argument parsing become one line on
stderr and an exit code: 2 for bad usage, 1 for a runtime failure. REGCLI_DEBUG=1 shows the
full traceback instead.
"""

import os
import shlex
import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from regcli import __version__
from regcli.artifacts import SEED_PREFIX, figure_path, find_models, model_dirs, model_label
from regcli.config import TrainConfig
from regcli.console import TrainingReporter, stderr, stdout
from regcli.errors import Interrupted, RegcliError, UsageError

DEBUG_ENV = "REGCLI_DEBUG"
REPORT_SPARSITIES = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9]  # fractions of conv weights zeroed


class OneLineErrors(TyperGroup):
    """Report every expected failure as `error: ...` on one line, without a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (typer.TyperException, RegcliError, OSError) as error:
            if os.environ.get(DEBUG_ENV):
                raise
            message = error.format_message() if isinstance(error, typer.TyperException) else error
            prefix = getattr(error, "prefix", "error")
            stderr.print(f"{prefix}: {message}", markup=False, soft_wrap=True)
            code = getattr(error, "exit_code", 1)
        except typer.Abort:
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help="What do L1 and L2 regularization do to a small CNN? Train, compare, export MNIST models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class RegScope(StrEnum):
    weights = "weights"
    all = "all"


class Schedule(StrEnum):
    onecycle = "onecycle"
    step = "step"


ModelsDir = Annotated[Path, typer.Option(help="Where models live: <models-dir>/<name>/.")]
ImagesDir = Annotated[Path, typer.Option(help="Where figures are written.")]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="MNIST IDX files (also in <dir>/MNIST/raw). Default: $REGCLI_DATA_DIR, else ./data.",
        show_default=False,
    ),
]


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
    l1: Annotated[float, typer.Option(help="L1 strength: adds l1 * sum(|w|) to the loss.")] = 0.0,
    weight_decay: Annotated[float, typer.Option(help="L2 strength (SGD weight decay).")] = 0.0,
    name: Annotated[
        str | None, typer.Option(help="Model name. Default: the mode (none, l1, l2, l1_l2).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = TrainConfig.lr,
    schedule: Annotated[Schedule, typer.Option(help="Learning-rate schedule.")] = Schedule.onecycle,
    seed: Annotated[int, typer.Option(help="Seed for weights, order, augmentation.")] = (
        TrainConfig.seed
    ),
    device: Annotated[Device, typer.Option(help="Training device.")] = Device.auto,
    reg_scope: Annotated[
        RegScope, typer.Option(help="weights: conv/linear weights only; all: every parameter.")
    ] = RegScope.weights,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    data_dir: DataDir = None,
    limit_train: Annotated[
        int | None, typer.Option(help="Train on the first N images only.", show_default=False)
    ] = None,
    limit_test: Annotated[
        int | None, typer.Option(help="Test on the first N images only.", show_default=False)
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Replace a finished (or abandon an interrupted) model of this name."),
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run (give the same options).")
    ] = False,
    seeds: Annotated[
        int | None,
        typer.Option(
            help="Train seeds 0..N-1 into <name>/seed-<k>/, reusing finished ones.",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
):
    """Train one model and write its checkpoint, metrics and history plot."""
    from regcli.runs import check_name, seed_plan, train_and_save

    config = TrainConfig(
        l1=l1,
        weight_decay=weight_decay,
        reg_scope=reg_scope.value,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule.value,
        seed=seed,
        limit_train=limit_train,
        limit_test=limit_test,
    )
    name = name or config.mode
    if force and resume:
        raise UsageError("--force and --resume contradict each other; choose one")
    if seeds is not None:
        if seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {seeds}")
        group_dir = models_dir / check_name(name)
        for seed, state in seed_plan(group_dir, seeds, force):
            if state == "finished":
                stdout.print(f"reusing {group_dir / f'seed-{seed}'}")
                continue
            with TrainingReporter(f"{name}/seed-{seed}", quiet) as reporter:
                model_dir = train_and_save(
                    replace(config, seed=seed),
                    f"seed-{seed}",
                    group_dir,
                    images_dir,
                    data_dir,
                    device.value,
                    reporter,
                    force,
                    resume=state == "interrupted",
                )
            stdout.print(f"saved {model_dir}")
        return
    try:
        with TrainingReporter(name, quiet) as reporter:
            model_dir = train_and_save(
                config,
                name,
                models_dir,
                images_dir,
                data_dir,
                device.value,
                reporter,
                force,
                resume,
            )
    except Interrupted as interruption:
        again = [a for a in sys.argv[1:] if a not in ("--force", "--resume")]
        interruption.args = (f"{interruption}; resume with: regcli {shlex.join(again)} --resume",)
        raise
    stdout.print(f"saved {model_dir}")


@app.command()
def summary():
    """Print the network layer by layer: output shape, parameters, receptive field."""
    from regcli.model import Net, count_parameters, layer_summary

    model = Net()
    stdout.print(f"{'layer':<42} {'output':>12} {'params':>7} {'RF':>4}")
    for row in layer_summary(model):
        shape = "x".join(map(str, row["output_shape"]))
        stdout.print(
            f"{row['layer']:<42} {shape:>12} {row['parameters']:>7,} {row['receptive_field']:>4}"
        )
    stdout.print(f"{'total':<42} {'':>12} {count_parameters(model):>7,}")


class Backend(StrEnum):
    torch = "torch"
    onnx = "onnx"


BackendOption = Annotated[Backend, typer.Option(help="Inference backend.")]
ModelsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Model directories. Default: every model under --models-dir.", show_default=False
    ),
]
ModelArg = Annotated[Path, typer.Argument(help="A model directory (or its model.pt).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
def export(
    models: ModelsArg = None,
    models_dir: ModelsDir = Path("models"),
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option(help="Export even if model.onnx is up to date.")] = False,
):
    """Export models to ONNX (model.onnx beside model.pt), checked against PyTorch."""
    from regcli.backends import is_current
    from regcli.export import export as export_model

    for model_dir in model_dirs(models, models_dir):
        if is_current(model_dir) and not force:
            stdout.print(f"up to date: {model_dir / 'model.onnx'}")
            continue
        stdout.print(f"exported {export_model(model_dir, data_dir)}")


@app.command()
def evaluate(
    models: ModelsArg = None,
    backend: BackendOption = Backend.torch,
    models_dir: ModelsDir = Path("models"),
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
):
    """Test loss, accuracy, per-class accuracy and confusion matrix on all 10,000 test images."""
    from regcli.inference import evaluate_models

    results = evaluate_models(model_dirs(models, models_dir), backend.value, data_dir)
    if json_output:
        stdout.print_json(data=results)
        return
    stdout.print(
        f"{'model':<16} {'backend':<8} {'accuracy':>9} {'loss':>8} {'correct':>13} {'images/s':>9}"
    )
    for r in results:
        stdout.print(
            f"{r['model']:<16} {r['backend']:<8} {100 * r['accuracy']:>8.2f}% "
            f"{r['loss']:>8.4f} {r['correct']:>6,}/{r['total']:<6,} "
            f"{r['images_per_second']:>9,.0f}"
        )
        per_class = "  ".join(f"{d}:{100 * a:.1f}" for d, a in enumerate(r["per_class"]))
        stdout.print(f"  per class (%): {per_class}")


@app.command()
def misclassified(
    models: ModelsArg = None,
    backend: BackendOption = Backend.torch,
    count: Annotated[int, typer.Option(help="How many digits to show.")] = 25,
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
):
    """Plot misclassified test digits with true label, prediction and confidence."""
    from regcli.inference import misclassified as plot_misclassified

    dirs = model_dirs(models, models_dir)
    if out is not None and len(dirs) > 1:
        raise UsageError("--out names one file; give one model, or use --images-dir")
    listing = []
    for model_dir in dirs:
        target = out or figure_path(images_dir, model_dir, "misclassified")
        rows = plot_misclassified(model_dir, backend.value, data_dir, count, target)
        listing.append(
            {"model": model_label(model_dir), "figure": str(target), "misclassified": rows}
        )
        if not json_output:
            stdout.print(f"wrote {target} ({len(rows)} digits)")
    if json_output:
        stdout.print_json(data=listing)


@app.command()
def predict(
    model: ModelArg,
    paths: Annotated[
        list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP), folders, or .npy arrays.")
    ],
    backend: BackendOption = Backend.torch,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write results to a .csv or .json file.", show_default=False),
    ] = None,
):
    """Predict digits in real images; exit code 1 if any input could not be read."""
    from regcli.inference import predict_paths

    rows, failures = predict_paths(model, backend.value, paths, out)
    for r in rows:
        top3 = "  ".join(f"{c}:{p:.3f}" for c, p in r["top3"])
        stdout.print(
            f"{r['path']}\t{r['prediction']}\t{r['probability']:.4f}\t{top3}", markup=False
        )
    for _, message in failures:
        stderr.print(f"error: {message}", markup=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def compare(
    models: ModelsArg = None,
    markdown: Annotated[bool, typer.Option(help="Print a Markdown table.")] = False,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
):
    """Compare models: test accuracy and loss curves in one figure, and a summary table."""
    from regcli.compare import compare as compare_models
    from regcli.compare import comparison_tables

    figure = images_dir / "model_compare.png"
    rows = compare_models(model_dirs(models, models_dir), figure)
    stdout.print(comparison_tables(rows, markdown), markup=False)
    stderr.print(f"wrote {figure}")


@app.command()
def report(
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    data_dir: DataDir = None,
    readme: Annotated[Path, typer.Option(help="README whose results table to refresh.")] = Path(
        "README.md"
    ),
):
    """Rebuild every figure and the README's results table from the models on disk (no training)."""
    from regcli.artifacts import update_readme
    from regcli.compare import README_SECTION, results_markdown
    from regcli.compare import compare as compare_models
    from regcli.data import load_split
    from regcli.inference import misclassified as plot_misclassified
    from regcli.runs import plot_history
    from regcli.weights import compare_pruning, compare_weights

    dirs = find_models(models_dir)
    for model_dir in dirs:
        plot_history(model_dir, images_dir)
        plot_misclassified(
            model_dir, "torch", data_dir, 25, figure_path(images_dir, model_dir, "misclassified")
        )
    rows = compare_models(dirs, images_dir / "model_compare.png")
    # one model per configuration keeps these two figures readable
    singles = [d for d in dirs if not d.name.startswith(SEED_PREFIX)] or dirs
    compare_weights(singles, images_dir / "weights_compare.png")
    compare_pruning(
        singles,
        REPORT_SPARSITIES,
        "torch",
        load_split(data_dir, "test"),
        images_dir / "pruning_compare.png",
    )
    update_readme(readme, *README_SECTION, results_markdown(rows))
    stdout.print(
        f"refreshed {len(dirs)} models' figures, {images_dir / 'model_compare.png'} "
        f"and the table in {readme}"
    )


@app.command()
def weights(
    models: ModelsArg = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    json_output: JsonFlag = False,
):
    """Weight norms, shares of small weights, and histograms of all models in one figure."""
    from regcli.weights import THRESHOLDS, compare_weights

    figure = images_dir / "weights_compare.png"
    stats = compare_weights(model_dirs(models, models_dir), figure)
    rows = [{k: v for k, v in s.items() if k != "values"} for s in stats]
    if json_output:
        stdout.print_json(data=rows)
        return
    shares = "  ".join(f"|w|<{t:g}" for t in THRESHOLDS)
    stdout.print(f"{'model':<20} {'weights':>7} {'L1 norm':>9} {'L2 norm':>8}  {shares}")
    for r in rows:
        small = "  ".join(
            f"{100 * r[f'below_{t:g}']:>{len(f'|w|<{t:g}') - 1}.2f}%" for t in THRESHOLDS
        )
        stdout.print(
            f"{r['model']:<20} {r['count']:>7,} {r['l1_norm']:>9.1f} {r['l2_norm']:>8.2f}  {small}"
        )
    stderr.print(f"wrote {figure}")


@app.command()
def prune(
    models: ModelsArg = None,
    sparsity: Annotated[
        str, typer.Option(help="Fractions of weights to zero, comma-separated.")
    ] = "0.5,0.7,0.9",
    backend: BackendOption = Backend.torch,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = Path("images"),
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
):
    """Zero the smallest conv weights (no retraining) and measure test accuracy at each level."""
    from regcli.data import load_split
    from regcli.weights import compare_pruning, parse_sparsities

    levels = parse_sparsities(sparsity)
    dirs = model_dirs(models, models_dir)
    figure = images_dir / "pruning_compare.png"
    curves = compare_pruning(dirs, levels, backend.value, load_split(data_dir, "test"), figure)
    if json_output:
        stdout.print_json(data=curves)
        return
    stdout.print(f"{'model':<20} " + " ".join(f"{f'{100 * s:g}% zero':>9}" for s in levels))
    for curve in curves:
        stdout.print(
            f"{curve['model']:<20} "
            + " ".join(f"{100 * p['accuracy']:>8.2f}%" for p in curve["points"])
        )
    stderr.print(f"wrote {figure}")


def main():
    app()
