"""What is on disk, for `regcli runs`: the state of each run folder (finished, interrupted,
diverged, missing, empty, locked), its settings, progress, start, duration and accuracy, with
filters by name and state; and which model folders a command works on (`model_dirs`: those
given, a folder of seed-<k> folders standing for its seeds, else every model under
--models-dir). PyTorch is loaded only to read an interrupted run's last.pt.
"""

from contextlib import suppress
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path

from regcli.core.config import TrainConfig
from regcli.core.errors import RegcliError
from regcli.core.locks import LOCK_NAME, lock_holder
from regcli.core.tables import clock, render
from regcli.core.text import terminal_safe
from regcli.store.layout import (
    CHECKPOINT_NAME,
    LAST_NAME,
    METRICS_NAME,
    SEED_PREFIX,
    checkpoint_path,
    folders_holding,
    is_seed_member,
    seed_dirs,
)
from regcli.store.records import Status, load_metrics


class State(StrEnum):
    """What a model folder holds."""

    interrupted = "interrupted"  # last.pt: an unfinished run
    finished = "finished"  # model.pt
    diverged = "diverged"  # metrics.json says so
    missing = "missing"  # metrics.json says finished, but model.pt is gone: trained again
    empty = "empty"


def folder_state(model_dir: Path) -> State:
    """What the folder holds (a last.pt wins: its run is not finished)."""
    model_dir = Path(model_dir)
    if (model_dir / LAST_NAME).is_file():
        return State.interrupted
    if (model_dir / CHECKPOINT_NAME).is_file():
        return State.finished
    if (model_dir / METRICS_NAME).is_file():
        with suppress(RegcliError):
            status = load_metrics(model_dir).get("status")
            return State.diverged if status == Status.diverged else State.missing
    return State.empty


def relative(model_dir: Path, models_dir: Path) -> str:
    try:
        return Path(model_dir).relative_to(models_dir).as_posix()
    except ValueError:
        return Path(model_dir).as_posix()


def list_runs(models_dir: Path, name: str | None = None, state: State | None = None) -> list[dict]:
    """Every run folder under models_dir: settings, progress, state, start, duration and final
    accuracy; `name`: only runs whose name (under models_dir) matches this shell pattern;
    `state`: only runs in that state (a locked run's is the state of its folder)."""
    root = Path(models_dir)
    if not root.is_dir():
        raise RegcliError(f"no models folder at {root}")
    markers = (CHECKPOINT_NAME, LAST_NAME, METRICS_NAME, LOCK_NAME)
    folders = folders_holding(root, markers)
    if name is not None:
        folders = [f for f in folders if fnmatchcase(relative(f, root), name)]
    if state is not None:  # a locked run is listed as locked, and filtered by what it holds
        folders = [f for f in folders if folder_state(f) == state]
    return [describe(folder, root) for folder in folders]


def describe(folder: Path, root: Path) -> dict:
    state = folder_state(folder)
    holder = lock_holder(folder)
    row = {
        "name": relative(folder, root),
        "state": state,
        "mode": None,
        "l1": None,
        "weight_decay": None,
        "seed": None,
        "train_images": None,
        "val_images": None,
        "epochs": None,
        "of": None,
        "test_accuracy": None,
        "started": None,
        "seconds": None,
    }
    try:
        if state == State.empty and not holder:
            return row
        if state == State.interrupted:
            from regcli.store.checkpoints import load_run_state  # PyTorch: only for a last.pt

            last = load_run_state(folder)
            config, history, run = last["config"], last["history"], last.get("run") or {}
        elif state != State.empty:
            metrics = load_metrics(folder)
            config, history = TrainConfig.from_dict(metrics["config"]), metrics["epochs"]
            run = metrics.get("run") or {}
        else:
            config, history, run = None, [], {}
    except RegcliError as error:
        return {**row, "state": f"unreadable ({error})"}
    row.update(started=run.get("started"), seconds=run.get("seconds"))
    if config is not None:
        row.update(
            mode=config.mode,
            l1=config.l1,
            weight_decay=config.weight_decay,
            seed=config.seed,
            train_images=config.train_images,
            val_images=config.val_size,
            epochs=len(history),
            of=config.epochs,
        )
        if history and state == State.finished:
            row["test_accuracy"] = history[-1]["test_accuracy"]
    if holder:
        row["state"] = f"locked by {holder}"
    return row


def runs_table(rows: list[dict]) -> str:
    """`regcli runs`: one line per run folder."""

    def number(value, fmt):
        return "-" if value is None else format(value, fmt)

    body = [
        [
            terminal_safe(r["name"]),
            r["mode"] or "-",
            number(r["l1"], "g"),
            number(r["weight_decay"], "g"),
            number(r["seed"], "d"),
            number(r["train_images"], ","),
            f"{r['epochs']}/{r['of']}" if r["of"] is not None else "-",
            terminal_safe(r["state"]),
            number(None if r["test_accuracy"] is None else 100 * r["test_accuracy"], ".2f"),
            day(r["started"]),
            "-" if r["seconds"] is None else clock(r["seconds"]),
        ]
        for r in rows
    ]
    headers = ["run", "mode", "l1", "weight decay", "seed", "images", "epochs", "state"]
    headers += ["test acc %", "started (UTC)", "took"]
    return render(headers, body, align="<<>>>>><>>>")


def day(started) -> str:
    """A run record's start as `YYYY-MM-DD HH:MM` (its own text if it is not a time)."""
    if not isinstance(started, str):
        return "-"
    return terminal_safe(started[:16].replace("T", " "))


# --- the model folders a command works on ----------------------------------------------------


def find_models(models_dir: Path | str) -> list[Path]:
    """Every directory under models_dir that holds a model.pt, sorted by name (a seed group
    with a finished member whose model.pt is gone is refused: see check_complete)."""
    root = Path(models_dir)
    found = folders_holding(root, (CHECKPOINT_NAME,)) if root.is_dir() else []
    if not found:
        raise RegcliError(f"no trained models under {root}; train one with `regcli train`")
    for group in dict.fromkeys(p.parent for p in found if is_seed_member(p)):
        check_complete(group)
    return found


def check_complete(group: Path) -> None:
    """A seed group whose finished member lost its model.pt would pass for one seed fewer:
    refused, naming the member (a diverged member is not missing: it never had one)."""
    for folder in sorted(Path(group).glob(f"{SEED_PREFIX}*")):
        if not is_seed_member(folder) or (folder / CHECKPOINT_NAME).exists():
            continue
        if (folder / LAST_NAME).exists() or not (folder / METRICS_NAME).is_file():
            continue  # interrupted, or empty: not a finished seed
        try:
            finished = load_metrics(folder).get("status") == Status.finished
        except RegcliError:
            continue  # unreadable: what reads it says so
        if finished:
            raise RegcliError(
                f"{folder}: its run finished, but its model.pt is missing, so its group would "
                "count one seed fewer; train it again (the same command reuses the others) or "
                "move the folder out"
            )


def model_dirs(models: list[Path] | None, models_dir: Path | str) -> list[Path]:
    """The model directories a command works on: those given, else all under models_dir.

    A folder that holds no model.pt but seed-<k> folders stands for its seeds. A folder given
    twice (or once as itself and once through its group) counts once.
    """
    if not models:
        return find_models(models_dir)
    chosen, seen = [], set()
    for model in map(Path, models):
        seeds = (
            seed_dirs(model) if model.is_dir() and not (model / CHECKPOINT_NAME).exists() else []
        )
        if seeds:
            check_complete(model)
        for folder in seeds or [checkpoint_path(model).parent]:
            if folder.resolve() not in seen:
                seen.add(folder.resolve())
                chosen.append(folder)
    return chosen
