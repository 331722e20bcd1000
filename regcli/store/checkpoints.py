"""model.pt and last.pt: a run's weights, config and record as plain data, read back safely.

Loaded with torch.load(weights_only=True), so a checkpoint can never run code; read with a size
cap and written atomically. Every payload is checked against its schema before use: finite
weights of regcli's shapes, a valid config, and summaries and epoch histories of the right types
and ranges, consistent with the config. The config is stored once (mode and strengths derive
from it); files of format version 1, which repeated them beside it, still load.
"""

import io
import pickle
from pathlib import Path

import torch

from regcli.core.config import MNIST_MEAN, MNIST_STD, TrainConfig
from regcli.core.errors import RegcliError, UsageError, first_line
from regcli.core.files import MODEL_FILE_BYTES, FileProblem, read_bytes, sha256_bytes, write_bytes
from regcli.nn.model import Net, count_parameters
from regcli.nn.pruning import mask_problem
from regcli.store.layout import CHECKPOINT_NAME, LAST_NAME, checkpoint_path
from regcli.store.records import (
    config_of,
    history_problem,
    record_problem,
    run_problem,
    write_metrics,
)

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
        raw = read_bytes(path, MODEL_FILE_BYTES)
    except FileProblem as error:
        raise RegcliError(f"{error} (not a readable regcli checkpoint)") from None
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
    return config_of(payload, path)


SUMMARY_FIELDS = {  # model.pt's summaries of its history: epoch record fields each must hold
    "final": ("epoch", "test_accuracy", "test_loss", "train_accuracy"),
    "best": ("epoch", "test_accuracy", "test_loss"),
}


def summary_problem(payload: dict, config: TrainConfig) -> str | None:
    """Why a finished checkpoint's epochs, parameter count and summaries are not consistent
    with its config (None if they are)."""
    epochs, parameters = payload.get("epochs"), payload.get("parameters")
    if isinstance(epochs, bool) or epochs != config.epochs:
        return f"epochs {epochs!r}, but its config asks for {config.epochs}"
    if isinstance(parameters, bool) or not isinstance(parameters, int) or parameters < 1:
        return f"parameters {parameters!r} is not a count of weights"
    for part, names in SUMMARY_FIELDS.items():
        summary = payload.get(part)
        if not isinstance(summary, dict) or set(summary) != set(names):
            return f"no {part} summary ({', '.join(names)})"
        full = {**dict.fromkeys(("penalty", "lr", "seconds", "train_loss"), 0.0), **summary}
        problem = record_problem({"train_accuracy": 0.0, **full})
        if problem is None and not 1 <= summary["epoch"] <= config.epochs:
            problem = f"epoch {summary['epoch']} of {config.epochs}"
        if problem:
            return f"{part}: {problem}"
    return None


def checked_checkpoint(payload: dict, path: Path) -> dict:
    config = checkpoint_config(payload, path)
    problem = (
        summary_problem(payload, config)
        or run_problem(payload.get("run"))
        or mask_problem(payload.get("mask"), payload.get("state_dict"), config)
    )
    if problem:
        raise RegcliError(f"{path}: not a consistent regcli checkpoint ({problem})")
    return payload


def load_checkpoint(model: Path | str) -> dict:
    """Load and validate a finished run's checkpoint; never unpickles arbitrary objects."""
    path = checkpoint_path(model)
    return checked_checkpoint(read_payload(path, CHECKPOINT_FORMAT)[0], path)


def load_checkpoint_with_hash(model: Path | str) -> tuple[dict, str]:
    """The checkpoint and the sha256 of exactly the bytes it was loaded from."""
    path = checkpoint_path(model)
    payload, raw = read_payload(path, CHECKPOINT_FORMAT)
    return checked_checkpoint(payload, path), sha256_bytes(raw)


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
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            return f"{key} holds NaN or infinite values"
    return None


def load_model(model: Path | str) -> tuple[Net, dict]:
    path = checkpoint_path(model)
    payload = load_checkpoint(path)
    return model_from_checkpoint(payload, path), payload


def checkpoint_payload(
    state_dict: dict, config: TrainConfig, history: list[dict], record: dict, mask=None
) -> dict:
    """The checkpoint as plain data: loadable with torch.load(weights_only=True); a pruned
    run's mask (its kept conv weights, pruning.py) beside its weights."""
    final = history[-1]
    best = max(history, key=lambda r: r["test_accuracy"])
    return {
        **({"mask": mask} if mask is not None else {}),
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


def save_run(
    model_dir: Path,
    state_dict: dict,
    config: TrainConfig,
    history: list[dict],
    record: dict,
    mask: dict | None = None,
) -> None:
    """model.pt, metrics.json and metrics.csv of a finished run."""
    payload = checkpoint_payload(state_dict, config, history, record, mask)
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
        problem = run_state_problem(state, config)
    except UsageError as error:
        problem = f"invalid config: {error}"
    if problem:
        raise RegcliError(f"{path}: cannot resume ({problem}); start over with --force")
    return {**state, "config": config}


def run_state_problem(state: dict, config: TrainConfig) -> str | None:
    """Why last.pt cannot continue `config` (None if it can): weights and momentum of regcli's
    shapes and finite, an epoch history consistent with the config, and its group and run."""
    net = Net(config.dropout)
    problem = state_dict_problem(net, state.get("weights"))
    shapes = {k: p.shape for k, p in net.named_parameters()}
    momentum = state.get("momentum")
    if problem is None and not (
        isinstance(momentum, dict)
        and set(momentum) == set(shapes)
        and all(
            isinstance(momentum[k], torch.Tensor) and momentum[k].shape == shapes[k] for k in shapes
        )
    ):
        problem = "no optimizer state for every weight"
    if problem is None and not all(torch.isfinite(m).all() for m in momentum.values()):
        problem = "optimizer state holds NaN or infinite values"
    history = state.get("history")
    if problem is None:
        problem = history_problem(history, config, finished=False)
    diverged = state.get("diverged")
    if problem is None and diverged is not None and not isinstance(diverged, dict):
        problem = f"diverged {diverged!r} is not a record of where it diverged"
    if problem is None:
        problem = mask_problem(state.get("mask"), state["weights"], config, finished=False)
    return problem or group_problem(state.get("group")) or resume_record_problem(state.get("run"))


def group_problem(group) -> str | None:
    """Why last.pt's record of its training group is unusable (None if it is usable)."""
    if not isinstance(group, dict):
        return "no record of its training group"
    members, size, index = group.get("members"), group.get("size"), group.get("index")
    if not (isinstance(members, list) and members and all(isinstance(m, str) for m in members)):
        return "its training group names no members"
    if size != len(members) or not isinstance(index, int) or not 0 <= index < len(members):
        return f"its training group is inconsistent (size {size!r}, index {index!r})"
    return None


RESUME_FIELDS = ("started", "command", "device", "deterministic", "seconds", "resumed_by")


def resume_record_problem(run) -> str | None:
    """Why last.pt's run record cannot continue a run (None if it can): every field a resume
    reads is there, of its type (records.run_problem)."""
    if not isinstance(run, dict):
        return "no record of its run"
    missing = [name for name in RESUME_FIELDS if name not in run]
    if missing:
        return f"its run record has no {', '.join(missing)}"
    return run_problem(run)
