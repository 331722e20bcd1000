"""Everything regcli writes or reads on disk: checkpoints, metrics files, model directories.

Every write goes to a temporary file in the target's directory and is then renamed over the
target with os.replace, so a killed process leaves either the old file or the new one, never a
half-written one.
"""

import csv
import io
import json
import os
import platform
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import torch

import regcli
from regcli.config import MNIST_MEAN, MNIST_STD, TrainConfig
from regcli.errors import RegcliError
from regcli.model import Net, count_parameters

CHECKPOINT_FORMAT = "regcli-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "model.pt"
METRICS_NAME = "metrics.json"


@contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise RegcliError(f"cannot write {path}: {error.strerror or error}") from error
    text_options = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(fd, mode, **text_options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        with suppress(OSError):
            os.unlink(temporary)
        raise RegcliError(f"cannot write {path}: {error.strerror or error}") from error
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def ensure_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written in it."""
    with atomic_open(Path(folder) / ".write-test") as f:
        f.write(b"")
    os.unlink(Path(folder) / ".write-test")


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def write_json(path: Path, data) -> None:
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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


def checkpoint_path(model: Path | str) -> Path:
    """A model directory or a model.pt file -> the model.pt path, which must exist."""
    path = Path(model)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        where = path.parent if path.name == CHECKPOINT_NAME else path
        raise RegcliError(
            f"no regcli model at {where} (expected {CHECKPOINT_NAME}; "
            "train one with `regcli train`)"
        )
    return path


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


def load_metrics(model_dir: Path) -> dict:
    path = model_dir / METRICS_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RegcliError(f"{path}: cannot read metrics ({error})") from error


SEED_PREFIX = "seed-"  # models/<name>/seed-<k>/: one of several seeds of the same configuration


def model_group(model_dir: Path) -> str:
    """The configuration a model belongs to: <name> for models/<name>/ and its seed-<k>/."""
    model_dir = Path(model_dir)
    return model_dir.parent.name if model_dir.name.startswith(SEED_PREFIX) else model_dir.name


def model_label(model_dir: Path) -> str:
    """How tables and legends name a model: <name>, or <name>/seed-<k>."""
    model_dir = Path(model_dir)
    if model_dir.name.startswith(SEED_PREFIX):
        return f"{model_dir.parent.name}/{model_dir.name}"
    return model_dir.name


def figure_path(images_dir: Path, model_dir: Path, kind: str) -> Path:
    """<images-dir>/<name>_<kind>.png (<name>_seed-<k>_<kind>.png for a seed)."""
    return Path(images_dir) / f"{model_label(model_dir).replace('/', '_')}_{kind}.png"


def find_models(models_dir: Path | str) -> list[Path]:
    """Every directory under models_dir that holds a model.pt, sorted by name."""
    root = Path(models_dir)
    found = sorted(p.parent for p in root.rglob(CHECKPOINT_NAME)) if root.is_dir() else []
    if not found:
        raise RegcliError(f"no trained models under {root}; train one with `regcli train`")
    return found


def model_dirs(models: list[Path] | None, models_dir: Path | str) -> list[Path]:
    """The model directories a command works on: those given, else all under models_dir."""
    return [checkpoint_path(m).parent for m in models] if models else find_models(models_dir)
