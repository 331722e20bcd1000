"""Figures, drawn through matplotlib's object API (no pyplot state), so they work headless."""

import io
import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from regcli.artifacts import write_bytes


def save_figure(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())


def history_figure(name: str, history: list[dict]) -> Figure:
    """Train and test accuracy (left) and loss (right) per epoch: the 'Model Epoch History'."""
    epochs = [r["epoch"] for r in history]
    figure = Figure(figsize=(11, 4))
    accuracy, loss = figure.subplots(1, 2)
    for split in ("train", "test"):
        accuracy.plot(
            epochs,
            [100 * r[f"{split}_accuracy"] for r in history],
            marker="o",
            markersize=3,
            label=split,
        )
        loss.plot(
            epochs, [r[f"{split}_loss"] for r in history], marker="o", markersize=3, label=split
        )
    accuracy.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    loss.set(title="Loss (cross-entropy, without penalty)", xlabel="epoch", ylabel="loss")
    for axes in (accuracy, loss):
        axes.grid(alpha=0.3)
        axes.legend()
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"{name}: model epoch history")
    return figure


def misclassified_figure(images, rows: list[dict], title: str) -> Figure:
    """A near-square grid of digits, each titled with true label, prediction and confidence."""
    count = max(len(rows), 1)
    columns = math.ceil(math.sqrt(count))
    grid_rows = math.ceil(count / columns)
    figure = Figure(figsize=(1.6 * columns, 1.75 * grid_rows + 0.4))
    axes = figure.subplots(grid_rows, columns, squeeze=False).flatten()
    for ax in axes:
        ax.axis("off")
    for ax, image, row in zip(axes, images, rows, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(
            f"#{row['index']}: true {row['true']}, pred {row['predicted']}\n"
            f"{row['confidence']:.0%} sure",
            fontsize=8,
        )
    figure.suptitle(title)
    return figure
