"""A training run on disk: `regcli train` from start to finished model, surviving interruption.

After every epoch the run's complete state (weights, optimizer, schedule, random generators,
history) goes to <model_dir>/last.pt, atomically. Ctrl-C or SIGTERM stops at the next batch
boundary; `--resume` continues from last.pt and ends exactly where an uninterrupted run would
(same device, same seed). When the run finishes, model.pt and the metrics replace last.pt.
"""

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import torch

from regcli.artifacts import (
    CHECKPOINT_NAME,
    SEED_PREFIX,
    ensure_writable,
    figure_path,
    load_metrics,
    model_label,
)
from regcli.checkpoints import save_checkpoint, save_run
from regcli.config import TrainConfig
from regcli.data import load_split
from regcli.errors import Diverged, Interrupted, RegcliError, UsageError
from regcli.plots import history_figure, save_figure
from regcli.train import Reporter, StopFlag, resolve_device, train

LAST_NAME = "last.pt"  # the state after the last completed epoch of an unfinished run
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT and SIGTERM set a flag the trainer checks between batches (a second one kills)."""
    flag = StopFlag()
    watched = (signal.SIGINT, signal.SIGTERM)

    def request_stop(number, _frame):
        flag.signal_number = number
        for s in watched:  # a second signal gets the default behaviour: stop right now
            signal.signal(s, previous[s])

    previous = {s: signal.signal(s, request_stop) for s in watched}
    try:
        yield flag
    finally:
        for s in watched:
            signal.signal(s, previous[s])


def load_last(model_dir: Path) -> dict:
    path = model_dir / LAST_NAME
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RegcliError(
            f"{path}: cannot read the interrupted run ({error}); start over with --force"
        ) from error


def resume_state(model_dir: Path, config: TrainConfig, resume: bool, force: bool) -> dict | None:
    """What to start from, after checking the directory against --resume / --force."""
    finished = (model_dir / CHECKPOINT_NAME).is_file()
    unfinished = (model_dir / LAST_NAME).is_file()
    if resume:
        if not unfinished:
            what = "its run is finished" if finished else "no interrupted run is there"
            raise UsageError(f"nothing to resume in {model_dir}: {what}")
        state = load_last(model_dir)
        saved = TrainConfig.from_dict(state["config"])
        if saved != config:
            differences = ", ".join(
                f"{k} {v!r} (saved {saved.as_dict()[k]!r})"
                for k, v in config.as_dict().items()
                if saved.as_dict()[k] != v
            )
            raise UsageError(
                f"--resume needs the options of the interrupted run; differs in {differences}"
            )
        return state
    if force:
        return None
    if unfinished:
        raise UsageError(
            f"{model_dir} holds an interrupted run; pass --resume to continue it "
            "or --force to start over"
        )
    if finished:
        raise UsageError(
            f"{model_dir} already holds a trained model; pass --force to replace "
            "it or --name to train another"
        )
    return None


def seed_plan(group_dir: Path, seeds: int, force: bool) -> list[tuple[int, str]]:
    """For seeds 0..seeds-1 under group_dir: "finished" (reused unless --force),
    "interrupted" (resumed) or "new"."""
    plan = []
    for seed in range(seeds):
        seed_dir = group_dir / f"{SEED_PREFIX}{seed}"
        if (seed_dir / CHECKPOINT_NAME).is_file() and not force:
            plan.append((seed, "finished"))
        elif (seed_dir / LAST_NAME).is_file() and not force:
            plan.append((seed, "interrupted"))
        else:
            plan.append((seed, "new"))
    return plan


def remove_stale_temporaries(model_dir: Path) -> None:
    """Temporary files a killed process left behind (a run owns its model directory)."""
    for leftover in model_dir.glob(".*.tmp"):
        with suppress(OSError):
            leftover.unlink()


def train_and_save(
    config: TrainConfig,
    name: str,
    models_dir: Path,
    images_dir: Path,
    data_dir: Path | None = None,
    device_name: str = "auto",
    reporter: Reporter | None = None,
    force: bool = False,
    resume: bool = False,
) -> Path:
    """`regcli train`: train (or continue), then write model.pt, metrics and the history plot."""
    model_dir = Path(models_dir) / check_name(name)
    state = resume_state(model_dir, config, resume, force)
    device = resolve_device(device_name)
    train_split, test_split = load_split(data_dir, "train"), load_split(data_dir, "test")
    for folder in (model_dir, Path(images_dir)):
        ensure_writable(folder)  # fail now, not after the whole run
    remove_stale_temporaries(model_dir)
    if state is None:
        (model_dir / LAST_NAME).unlink(missing_ok=True)  # --force: that run is abandoned
    saved_epochs = len(state["history"]) if state else 0

    def save_last(run, history):
        nonlocal saved_epochs
        saved_epochs = len(history)
        save_checkpoint(
            model_dir / LAST_NAME,
            {
                "config": config.as_dict(),
                "run": run.state_dict(),
                "history": [r.as_dict() for r in history],
            },
        )

    with stop_on_signals() as stop:
        try:
            model, history = train(
                config,
                train_split,
                test_split,
                device,
                reporter,
                resume=state,
                on_epoch=save_last,
                stop=stop,
            )
        except (Interrupted, Diverged) as stopped:
            kept = (
                f"epoch {saved_epochs}/{config.epochs} is saved in {model_dir / LAST_NAME}"
                if saved_epochs
                else "no epoch was completed"
            )
            stopped.args = (f"{stopped}; {kept}",)
            raise
    records = [r.as_dict() for r in history]
    save_run(model_dir, model, config, records, str(device))
    plot_history(model_dir, images_dir)
    (model_dir / LAST_NAME).unlink(missing_ok=True)
    return model_dir


def plot_history(model_dir: Path, images_dir: Path) -> Path:
    """images/<name>_history.png from the model's metrics.json."""
    target = figure_path(images_dir, model_dir, "history")
    save_figure(history_figure(model_label(model_dir), load_metrics(model_dir)["epochs"]), target)
    return target
