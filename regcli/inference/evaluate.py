"""The inference commands evaluate and misclassified, over either backend (predict: predict.py).

numpy only: with the ONNX backend these commands never load PyTorch.
"""

import time
from pathlib import Path

from regcli.data.mnist import Split
from regcli.inference.backends import open_predictor
from regcli.inference.scoring import Scores, score
from regcli.store.layout import model_label


def evaluate_model(
    model_dir: Path, *, backend: str, test: Split, label: str | None = None
) -> tuple[dict, Scores]:
    """Score one model on the test split; a JSON-ready summary and the raw scores (the model
    named by `label`, default its model_label)."""
    predict = open_predictor(model_dir, backend=backend)
    started = time.perf_counter()
    scores = score(predict, test)
    seconds = time.perf_counter() - started
    summary = {
        "model": label or model_label(model_dir),
        "path": str(model_dir),
        "backend": backend,
        "accuracy": scores.accuracy,
        "loss": scores.loss,
        "correct": scores.correct,
        "total": scores.total,
        "per_class": scores.per_class_accuracy,
        "confusion": scores.confusion.tolist(),
        "seconds": seconds,
        "images_per_second": scores.total / seconds,
    }
    return summary, scores


def plot_misclassified(
    model_dir: Path, *, backend: str, test: Split, count: int, out: Path
) -> list[dict]:
    """Plot the first `count` misclassified test digits (in test-set order) to `out`."""
    from regcli.plots.figures import (  # matplotlib: only when drawing
        misclassified_figure,
        save_figure,
    )

    _, scores = evaluate_model(model_dir, backend=backend, test=test)
    chosen = scores.misclassified[:count].tolist()
    rows = [
        {
            "index": i,
            "true": int(scores.labels[i]),
            "predicted": int(scores.predicted[i]),
            "confidence": float(scores.confidence[i]),
        }
        for i in chosen
    ]
    shown = f"{len(rows)} of {len(scores.misclassified)}"
    title = f"{model_label(model_dir)}: {shown} misclassified ({backend})"
    save_figure(misclassified_figure(test.images[chosen], rows, title), out)
    return rows
