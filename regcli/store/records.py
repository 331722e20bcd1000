"""A run's record of its epochs, and metrics.json: defined, written and read back here only.

One epoch is an `EpochRecord`; metrics.json holds the run's config, its run record and one
epoch record per finished epoch (metrics.csv the same rows, for a spreadsheet). Everything read
back is checked before use: a finite number of the right range in every field, epochs numbered
1..n, no more of them than the config asks for, and as many as it asks for in a finished run,
so a damaged or hand-edited file is one line naming it, never a traceback or a wrong number.
"""

import json
import math
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path

from regcli.core.config import TrainConfig
from regcli.core.errors import RegcliError, UsageError
from regcli.core.files import FileProblem, read_json, write_csv, write_json
from regcli.store.layout import METRICS_CSV_NAME, METRICS_NAME


class Status(StrEnum):
    """How a run in metrics.json ended."""

    finished = "finished"  # model.pt beside it
    diverged = "diverged"  # stopped: a loss went non-finite or absurd


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy on the augmented training batches (the data term)
    penalty: float  # mean L1 penalty term added to the loss (0 without L1)
    train_accuracy: float  # fraction 0..1, on the augmented batches, in training mode
    test_loss: float  # mean cross-entropy over the test images
    test_accuracy: float  # fraction 0..1
    lr: float  # learning rate at the end of the epoch
    seconds: float  # wall time of the epoch, test pass included (shared by a group)
    # None when not measured: without --val-size, and without --train-size for the last
    val_loss: float | None = None  # mean cross-entropy over the run's validation images
    val_accuracy: float | None = None  # fraction 0..1 on them
    clean_train_accuracy: float | None = None  # fraction 0..1 on its training subset, eval mode

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "EpochRecord":
        """A checked record (see record_problem), older ones without the optional fields too."""
        return cls(**record)


EPOCH_FIELDS = tuple(f.name for f in fields(EpochRecord))
OPTIONAL_FIELDS = ("val_loss", "val_accuracy", "clean_train_accuracy")  # absent in older files
FRACTIONS = ("train_accuracy", "test_accuracy", "val_accuracy", "clean_train_accuracy")


def record_problem(record) -> str | None:
    """Why `record` is not one epoch's record (None if it is)."""
    required = set(EPOCH_FIELDS) - set(OPTIONAL_FIELDS)
    if not isinstance(record, dict) or not required <= set(record) <= set(EPOCH_FIELDS):
        return (
            f"an epoch record must hold {', '.join(sorted(required))} and may hold "
            f"{', '.join(OPTIONAL_FIELDS)}"
        )
    for name in EPOCH_FIELDS:
        value = record.get(name)
        if name in OPTIONAL_FIELDS and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} {value!r} is not a number"
        if not math.isfinite(value) or value < 0:
            return f"{name} {value!r} is not a finite number >= 0"
        if name in FRACTIONS and value > 1:
            return f"{name} {value!r} is not a fraction in [0, 1]"
    if not float(record["epoch"]).is_integer():
        return f"epoch {record['epoch']!r} is not a whole number"
    return None


def history_problem(history, config: TrainConfig, finished: bool) -> str | None:
    """Why `history` is not a run's epochs under `config` (None if it is): records numbered
    1..n, at most config.epochs of them, and all of them once the run is finished."""
    if not isinstance(history, list):
        return "epochs must be a list of epoch records"
    for index, record in enumerate(history, 1):
        problem = record_problem(record)
        if problem:
            return f"epoch record {index}: {problem}"
        if record["epoch"] != index:
            return f"epoch record {index} is numbered {record['epoch']} (epochs run 1..n)"
    measured = {"val_loss": config.val_size > 0, "val_accuracy": config.val_size > 0}
    measured["clean_train_accuracy"] = config.train_size is not None
    for index, record in enumerate(history, 1):
        for name, expected in measured.items():
            if (record.get(name) is not None) != expected:
                what = "holds" if not expected else "lacks"
                return f"epoch record {index} {what} {name}, which its config says it would not"
    if len(history) > config.epochs:
        return f"{len(history)} epoch records, but its config asks for {config.epochs} epochs"
    if finished and len(history) != config.epochs:
        return f"a finished run of {config.epochs} epochs with {len(history)} epoch records"
    return None


NUMBER = (int, float)
RUN_TYPES = {  # a run record's fields (provenance.run_record), each of this type when present
    "command": list,
    "started": str,
    "finished": str,
    "device": str,
    "machine": dict,
    "versions": dict,
    "code": (dict, type(None)),
    "seconds": NUMBER,
    "group": dict,
    "deterministic": bool,
    "cuda_graphs": bool,
    "resumed_by": list,
}


def run_problem(run) -> str | None:
    """Why a saved run record is not one (None if it is, or if there is none: older files)."""
    if run is None:
        return None
    if not isinstance(run, dict):
        return "its run record is not a table"
    for name, kind in RUN_TYPES.items():
        value = run.get(name)
        if name in run and (
            not isinstance(value, kind) or isinstance(value, bool) != (kind is bool)
        ):
            return f"its run record's {name} {value!r:.60} is not of the right type"
    seconds = run.get("seconds", 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return f"its run record's seconds {seconds!r} is not a number of seconds"
    group = run.get("group", {"size": 1, "members": []})
    members = group.get("members", [])
    size = group.get("size", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return f"its run record's group size {size!r} is not a count"
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        return "its run record's group members are not folder names"
    try:
        json.dumps(run, allow_nan=False)
    except (TypeError, ValueError):
        return "its run record is not plain data"
    return None


def config_of(data: dict, source: Path | str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(data.get("config"), "config")
    except (UsageError, TypeError) as error:
        raise RegcliError(f"{source}: invalid config ({error})") from None


def load_metrics(model_dir: Path) -> dict:
    """metrics.json, checked: a config, a status, and epoch records consistent with both."""
    path = Path(model_dir) / METRICS_NAME
    try:
        metrics = read_json(path)
    except FileProblem as error:
        raise RegcliError(f"{error} (cannot read its metrics)") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("config"), dict):
        raise RegcliError(f"{path}: not regcli metrics (no config)")
    config = config_of(metrics, path)
    status = metrics.get("status", Status.finished)  # files before status was: finished
    if status not in set(Status):
        known = ", ".join(Status)
        raise RegcliError(f"{path}: status {status!r:.40} is not one of {known}")
    problem = history_problem(metrics.get("epochs"), config, finished=status == Status.finished)
    if problem:
        raise RegcliError(f"{path}: not regcli metrics ({problem})")
    if not metrics["epochs"] and status != Status.diverged:
        raise RegcliError(f"{path}: holds no finished epoch")
    if status == Status.diverged and not isinstance(metrics.get("diverged"), dict):
        raise RegcliError(f"{path}: a diverged run that does not say where it diverged")
    problem = run_problem(metrics.get("run"))
    if problem:
        raise RegcliError(f"{path}: not regcli metrics ({problem})")
    return metrics


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
        "status": (Status.diverged if diverged else Status.finished).value,
        "mode": config.mode,
        "config": config.as_dict(),
        "run": record,
        **({"diverged": diverged} if diverged else {}),
        "epochs": history,
    }
    write_json(Path(model_dir) / METRICS_NAME, metrics)
    if history:
        write_csv(Path(model_dir) / METRICS_CSV_NAME, history)
