"""The inference commands (evaluate, misclassified, predict) over either backend.

numpy only: with the ONNX backend these commands never load PyTorch.
"""

import time
from pathlib import Path

import numpy as np

from regcli.artifacts import model_label, write_csv, write_json
from regcli.backends import open_predictor
from regcli.data import Split, load_split
from regcli.errors import RegcliError, UsageError
from regcli.scoring import Scores, log_softmax, score
from regcli.preprocess import collect, load

PREDICT_BATCH = 256  # images per inference batch in `predict`


def evaluate_model(model_dir: Path, backend: str, test: Split) -> tuple[dict, Scores]:
    """Score one model on the test split; a JSON-ready summary and the raw scores."""
    predict = open_predictor(model_dir, backend)
    started = time.perf_counter()
    scores = score(predict, test)
    seconds = time.perf_counter() - started
    summary = {
        "model": model_label(model_dir),
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


def evaluate_models(model_dirs: list[Path], backend: str, data_dir: Path | None) -> list[dict]:
    test = load_split(data_dir, "test")
    return [evaluate_model(d, backend, test)[0] for d in model_dirs]


def misclassified(
    model_dir: Path, backend: str, data_dir: Path | None, count: int, out: Path
) -> list[dict]:
    """Plot the first `count` misclassified test digits (in test-set order) to `out`."""
    from regcli.plots import misclassified_figure, save_figure  # matplotlib: only when drawing

    if count < 1:
        raise UsageError(f"--count must be >= 1, got {count}")
    test = load_split(data_dir, "test")
    _, scores = evaluate_model(model_dir, backend, test)
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


def predict_paths(model_dir: Path, backend: str, paths: list[Path], out: Path | None):
    """Predict every readable input; returns (rows, failures as (path, message))."""
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"--out {out}: use a .csv or .json file name")
    predict = open_predictor(model_dir, backend)
    labels, images, failures = [], [], []
    for path in collect(paths):
        try:
            for label, image in load(path):
                labels.append(label)
                images.append(image)
        except RegcliError as error:
            failures.append((str(path), str(error)))
    rows = []
    if images:
        batch = np.stack(images)[:, None]
        logits = np.concatenate(
            [predict(batch[i : i + PREDICT_BATCH]) for i in range(0, len(batch), PREDICT_BATCH)]
        )
        probabilities = np.exp(log_softmax(logits))
        top3 = np.argsort(-probabilities, axis=1, kind="stable")[:, :3]
        for label, classes, p in zip(labels, top3, probabilities, strict=True):
            rows.append(
                {
                    "path": label,
                    "prediction": int(classes[0]),
                    "probability": float(p[classes[0]]),
                    "top3": [[int(c), round(float(p[c]), 6)] for c in classes],
                }
            )
    if out is not None:
        write_results(out, rows, failures)
    return rows, failures


def write_results(out: Path, rows: list[dict], failures: list[tuple[str, str]]) -> None:
    if out.suffix.lower() == ".json":
        write_json(
            out, {"predictions": rows, "failures": [{"path": p, "error": e} for p, e in failures]}
        )
        return
    flat = [
        {
            **{k: v for k, v in r.items() if k != "top3"},
            "top3": " ".join(f"{c}:{v:.4f}" for c, v in r["top3"]),
        }
        for r in rows
    ]
    write_csv(out, flat, fieldnames=["path", "prediction", "probability", "top3"])
