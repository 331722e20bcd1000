"""model.pt and last.pt: a run's weights, config and record as plain data, read back safely.

Loaded with torch.load(weights_only=True), so a checkpoint can never run code; written atomically.
The config is stored once (mode and strengths derive from it); files of format version 1, which
repeated them beside it, still load.
"""

import io
import pickle
from pathlib import Path

import torch

from regcli.artifacts import (
    CHECKPOINT_NAME,
    EPOCH_FIELDS,
    LAST_NAME,
    METRICS_NAME,
    checkpoint_path,
    sha256_bytes,
    write_bytes,
    write_csv,
    write_json,
)
from regcli.config import MNIST_MEAN, MNIST_STD, TrainConfig
from regcli.errors import RegcliError, UsageError, first_line
from regcli.model import Net, count_parameters

CHECKPOINT_FORMAT = "regcli-checkpoint"
RUN_STATE_FORMAT = "regcli-run-state"  # last.pt
CHECKPOINT_VERSION = 2  # 1: mode, strengths and seed repeated beside the config


class NewerFormat(RegcliError):
    """A checkpoint of a format version this regcli does not know (a newer one wrote it)."""


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())


def read_payload(path: Path, expected_format: str) -> tuple[dict, bytes]:
    """A checkpoint's plain-data payload and the exact bytes it was read from."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise RegcliError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" not in str(error).lower():  # bytes that only look like a pickle
            raise RegcliError(f"{path}: not a readable regcli checkpoint (corrupt)") from None
        raise RegcliError(  # weights_only refused a Python object: never load it
            f"{path}: not a readable regcli checkpoint (it holds Python objects, not plain data; "
            "regcli never loads those, since they can run code)"
        ) from None
    except Exception as error:  # corrupt zip, truncated file: torch raises many kinds
        reason = "corrupt" if isinstance(error, KeyError) else first_line(error)
        raise RegcliError(f"{path}: not a readable regcli checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise RegcliError(f"{path}: not a regcli checkpoint")
    version = payload.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= CHECKPOINT_VERSION:
        raise NewerFormat(
            f"{path}: checkpoint format version {version!r} is not one this regcli reads "
            f"(1..{CHECKPOINT_VERSION}); a newer regcli wrote it"
        )
    return payload, raw


def checkpoint_config(payload: dict, path: Path | str = CHECKPOINT_NAME) -> TrainConfig:
    try:
        return TrainConfig.from_dict(payload.get("config"), "config")
    except (UsageError, TypeError) as error:
        raise RegcliError(f"{path}: invalid config ({error})") from None


def load_checkpoint(model: Path | str) -> dict:
    """Load and validate a finished run's checkpoint; never unpickles arbitrary objects."""
    return read_payload(checkpoint_path(model), CHECKPOINT_FORMAT)[0]


def load_checkpoint_with_hash(model: Path | str) -> tuple[dict, str]:
    """The checkpoint and the sha256 of exactly the bytes it was loaded from."""
    payload, raw = read_payload(checkpoint_path(model), CHECKPOINT_FORMAT)
    return payload, sha256_bytes(raw)


def model_from_checkpoint(payload: dict, path: Path | str = CHECKPOINT_NAME) -> Net:
    model = Net(checkpoint_config(payload, path).dropout)
    state = payload.get("state_dict")
    problem = state_dict_problem(model, state)
    if problem == "no weights" or not state:
        raise RegcliError(f"{path}: holds no weights")
    if problem:
        raise RegcliError(f"{path}: weights do not fit regcli's network ({problem})")
    model.load_state_dict(state)
    return model.eval()


def state_dict_problem(model: torch.nn.Module, state: dict, what: str = "weights") -> str | None:
    """Why `state` cannot be `model`'s (missing or extra keys, other shapes), or None."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"no {what}"
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(extra[:3])}" if extra else "",
        ]
        return "; ".join(p for p in parts if p) + (" ..." if len(missing) + len(extra) > 6 else "")
    for key, shape in expected.items():
        if state[key].shape != shape:
            return f"{key} has shape {tuple(state[key].shape)}, not {tuple(shape)}"
    return None


def load_model(model: Path | str) -> tuple[Net, dict]:
    path = checkpoint_path(model)
    payload = load_checkpoint(path)
    return model_from_checkpoint(payload, path), payload


def checkpoint_payload(
    state_dict: dict, config: TrainConfig, history: list[dict], record: dict
) -> dict:
    """The checkpoint as plain data: loadable with torch.load(weights_only=True)."""
    final = history[-1]
    best = max(history, key=lambda r: r["test_accuracy"])
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "config": config.as_dict(),
        "epochs": len(history),
        "parameters": count_parameters(Net(config.dropout)),
        "normalization": {"mean": MNIST_MEAN, "std": MNIST_STD, "inside_model": True},
        "run": record,
        "final": {k: final[k] for k in ("epoch", "test_accuracy", "test_loss", "train_accuracy")},
        "best": {k: best[k] for k in ("epoch", "test_accuracy", "test_loss")},
    }


def write_metrics(
    model_dir: Path,
    config: TrainConfig,
    history: list[dict],
    record: dict,
    diverged: dict | None = None,
) -> None:
    """metrics.json and metrics.csv: the config, the run record and one row per epoch."""
    metrics = {
        "name": Path(model_dir).name,
        "status": "diverged" if diverged else "finished",
        "mode": config.mode,
        "config": config.as_dict(),
        "run": record,
        **({"diverged": diverged} if diverged else {}),
        "epochs": history,
    }
    write_json(Path(model_dir) / METRICS_NAME, metrics)
    if history:
        write_csv(Path(model_dir) / "metrics.csv", history)


def save_run(
    model_dir: Path, state_dict: dict, config: TrainConfig, history: list[dict], record: dict
) -> None:
    """model.pt, metrics.json and metrics.csv of a finished run."""
    payload = checkpoint_payload(state_dict, config, history, record)
    save_checkpoint(Path(model_dir) / CHECKPOINT_NAME, payload)
    write_metrics(model_dir, config, history, record)


# --- last.pt: an unfinished run, after its last completed epoch ------------------------------


def save_run_state(model_dir: Path, state: dict) -> None:
    save_checkpoint(
        Path(model_dir) / LAST_NAME,
        {"format": RUN_STATE_FORMAT, "format_version": CHECKPOINT_VERSION, **state},
    )


def load_run_state(model_dir: Path) -> dict:
    """last.pt, checked to hold everything a resume needs; one clear line if it does not."""
    path = Path(model_dir) / LAST_NAME
    try:
        state, _ = read_payload(path, RUN_STATE_FORMAT)
    except NewerFormat:  # a newer regcli can resume it: do not advise throwing it away
        raise
    except RegcliError as error:
        raise RegcliError(f"{error}; start over with --force") from None
    try:
        config = TrainConfig.from_dict(state.get("config"), "config")
        net = Net(config.dropout)
        problem = state_dict_problem(net, state.get("weights"))
        parameters = dict(net.named_parameters())
        momentum = state.get("momentum")
        if problem is None and not (
            isinstance(momentum, dict)
            and set(momentum) == set(parameters)
            and all(
                isinstance(momentum[k], torch.Tensor) and momentum[k].shape == p.shape
                for k, p in parameters.items()
            )
        ):
            problem = "no optimizer state for every weight"
        history = state.get("history")
        if problem is None and not (
            isinstance(history, list)
            and all(isinstance(r, dict) and set(r) == set(EPOCH_FIELDS) for r in history)
        ):
            problem = "no complete epoch history"
        for part in ("group", "run"):
            if problem is None and not isinstance(state.get(part), dict):
                problem = f"no record of its {'training group' if part == 'group' else 'run'}"
    except UsageError as error:
        problem = f"invalid config: {error}"
    if problem:
        raise RegcliError(f"{path}: cannot resume ({problem}); start over with --force")
    return {**state, "config": config}
