"""model.pt: a finished run's weights, its config and its results, as plain data.

Loaded with torch.load(weights_only=True), so a checkpoint can never run code; written atomically.
"""

import io
import platform
import warnings
from pathlib import Path

import torch

import regcli
from regcli.artifacts import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    checkpoint_path,
    write_bytes,
    write_csv,
    write_json,
)
from regcli.config import MNIST_MEAN, MNIST_STD, TrainConfig
from regcli.errors import RegcliError
from regcli.model import Net, count_parameters

CHECKPOINT_FORMAT = "regcli-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())


def versions() -> dict:
    import torchvision

    return {
        "regcli": regcli.__version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def checkpoint_payload(
    model: Net, config: TrainConfig, history: list[dict], device: str = "cpu"
) -> dict:
    """The checkpoint as plain data: loadable with torch.load(weights_only=True)."""
    final = history[-1]
    best = max(history, key=lambda r: r["test_accuracy"])
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config.as_dict(),
        "mode": config.mode,
        "l1": config.l1,
        "weight_decay": config.weight_decay,
        "reg_scope": config.reg_scope,
        "seed": config.seed,
        "epochs": len(history),
        "device": device,
        "parameters": count_parameters(model),
        "normalization": {"mean": MNIST_MEAN, "std": MNIST_STD, "inside_model": True},
        "versions": versions(),
        "final": {k: final[k] for k in ("epoch", "test_accuracy", "test_loss", "train_accuracy")},
        "best": {k: best[k] for k in ("epoch", "test_accuracy", "test_loss")},
    }


def save_run(
    model_dir: Path, model: Net, config: TrainConfig, history: list[dict], device: str
) -> None:
    """model.pt, metrics.json and metrics.csv of a finished run on `device`."""
    save_checkpoint(model_dir / CHECKPOINT_NAME, checkpoint_payload(model, config, history, device))
    write_json(
        model_dir / METRICS_NAME,
        {
            "name": model_dir.name,
            "mode": config.mode,
            "device": device,
            "config": config.as_dict(),
            "epochs": history,
        },
    )
    write_csv(model_dir / "metrics.csv", history)


def load_checkpoint(model: Path | str) -> dict:
    """Load and validate a checkpoint; never unpickles arbitrary objects."""
    path = checkpoint_path(model)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, foreign pickle, truncated file: all the same here
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise RegcliError(f"{path}: not a readable regcli checkpoint ({first_line})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RegcliError(f"{path}: not a regcli checkpoint")
    return payload


def model_from_checkpoint(payload: dict) -> Net:
    config = TrainConfig.from_dict(payload["config"])
    model = Net(config.dropout)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def load_model(model: Path | str) -> tuple[Net, dict]:
    payload = load_checkpoint(model)
    return model_from_checkpoint(payload), payload
