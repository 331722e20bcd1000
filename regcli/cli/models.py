"""Commands on one model at a time: `summary`, `export`, `evaluate`, `misclassified` and
`predict`. With `--backend onnx` the last three never load PyTorch."""

from pathlib import Path
from typing import Annotated

import typer

from regcli.cli.app import app, command_line, each_model, exit_if, print_json, print_line
from regcli.cli.console import say, stderr
from regcli.cli.options import (
    BackendOption,
    DataDir,
    ImagesDir,
    JsonFlag,
    ModelArg,
    ModelsArg,
    ModelsDir,
    Quiet,
)
from regcli.core.config import Backend
from regcli.core.errors import UsageError
from regcli.core.text import terminal_safe
from regcli.store.layout import (
    ONNX_NAME,
    USER_FIGURES,
    figure_paths,
    model_label,
    unique_labels,
    within_models_dir,
)
from regcli.store.listing import model_dirs


@app.command()
def summary(json_output: JsonFlag = False):
    """Print the network layer by layer: output shape, parameters, receptive field."""
    from regcli.nn.model import Net, count_parameters, layer_summary, layer_table

    rows = layer_summary(Net())
    if json_output:
        print_json({"layers": rows, "parameters": count_parameters(Net())})
    else:
        print_line(layer_table(rows))


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
    from regcli.inference.export import Exported, export_model, up_to_date

    def export_one(model_dir: Path) -> dict:
        target = within_models_dir(model_dir, models_dir) / ONNX_NAME
        if up_to_date(model_dir) and not force:
            say(f"up to date: {target}", quiet)
            return {"model": str(model_dir), "onnx": str(target), "action": Exported.up_to_date}
        command = command_line()
        say(f"exported {export_model(model_dir, data_dir=data_dir, command=command)}", quiet)
        return {"model": str(model_dir), "onnx": str(target), "action": Exported.exported}

    done, failed = each_model(model_dirs(models, models_dir), "exporting", quiet, export_one)
    if json_output:
        print_json(done)
    exit_if(failed)


ShiftOption = Annotated[
    list[str] | None,
    typer.Option(
        "--shift",
        metavar="SHIFT",
        help="Evaluate on a shifted test set: rotate:DEGREES, noise:SIGMA, blur:SIGMA, "
        "erase:PIXELS or none; repeat it or join with commas (README: how each is made).",
        show_default=False,
    ),
]


@app.command()
def evaluate(
    models: ModelsArg = None,
    backend: BackendOption = Backend.torch,
    shift: ShiftOption = None,
    models_dir: ModelsDir = Path("models"),
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Test loss, accuracy and per-class accuracy on all 10,000 test images, or on shifted
    copies of them (--json: and the confusion matrix)."""
    from regcli.core.tables import Streaming
    from regcli.data.mnist import Split, load_split
    from regcli.data.shifts import parse_shifts
    from regcli.inference.evaluate import evaluate_model

    shifts = parse_shifts(shift)  # checked before any model is read
    dirs = model_dirs(models, models_dir)
    labels = unique_labels(dirs, models_dir)
    test = load_split(data_dir, "test")
    shifted = {s.name: Split(s.apply(test.images), test.labels) for s in shifts}  # one copy each
    widths = [max(len(label) for label in labels.values()), 7, 10, 9, 8, 13, 9]
    headers = ["model", "backend", "shift", "accuracy", "loss", "correct", "images/s"]
    table = None if json_output else Streaming(headers, widths, print_line)

    def evaluate_one(model_dir: Path) -> list[dict]:
        rows = []
        for name, images in shifted.items():
            r, _ = evaluate_model(
                model_dir, backend=backend.value, test=images, label=labels[model_dir]
            )
            rows.append({**r, "shift": name})
            if table:  # each row as soon as it is scored
                show_row(table, rows[-1])
        return rows

    results, failed = each_model(dirs, "evaluating", quiet, evaluate_one)
    if json_output:
        print_json([row for rows in results for row in rows])
    exit_if(failed)


def show_row(table, r: dict) -> None:
    table.row(
        [
            r["model"],
            r["backend"],
            r["shift"],
            f"{100 * r['accuracy']:.2f}%",
            f"{r['loss']:.4f}",
            f"{r['correct']:,}/{r['total']:,}",
            f"{r['images_per_second']:,.0f}",
        ]
    )
    per_class = "  ".join(f"{d}:{100 * a:.1f}" for d, a in enumerate(r["per_class"]))
    print_line(f"  per class (%): {per_class}")


@app.command()
def misclassified(
    models: ModelsArg = None,
    backend: BackendOption = Backend.torch,
    count: Annotated[int, typer.Option(help="How many digits to show.", min=1, max=400)] = 25,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Figure path (one model only). Default: <name>_misclassified.png in --images-dir.",
            show_default=False,
        ),
    ] = None,
    models_dir: ModelsDir = Path("models"),
    images_dir: ImagesDir = USER_FIGURES,
    data_dir: DataDir = None,
    json_output: JsonFlag = False,
    quiet: Quiet = False,
):
    """Plot misclassified test digits with true label, prediction and confidence."""
    from regcli.data.mnist import load_split
    from regcli.inference.evaluate import plot_misclassified

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
        bool,
        typer.Option(
            "--json",
            help="Print JSON lines to stdout, one object per input (a failed one: its error).",
        ),
    ] = False,
    quiet: Quiet = False,
):
    """Predict digits in real images; exit code 1 if any input could not be read."""
    import json

    from regcli.inference.backends import open_predictor
    from regcli.inference.predict import check_out, predict_files

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
        if json_output:  # the same object as the --out file's row
            print_line(json.dumps({"path": path, "status": "error", "error": message}))
        stderr.print(f"error: {terminal_safe(message)}", markup=False)

    _, failed = predict_files(predictor, paths, out, on_row=show, on_failure=failure)
    if out is not None:
        say(f"wrote {out}", quiet)
    exit_if(failed)
