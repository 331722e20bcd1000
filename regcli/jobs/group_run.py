"""One group of runs trained together: its run record, its last.pt after every epoch, and each
member saved as an ordinary model folder (or, if it diverged, as its metrics).

The runner (runner.py) calls `train_one_group` once per group, in its own process or in a
process of the pool (pool.py); `Kept` says what an interrupted group has saved.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from regcli.core.config import RunOptions
from regcli.core.errors import RegcliError
from regcli.core.events import Reporter
from regcli.core.provenance import run_record, utc_now
from regcli.jobs.pruned_runs import source_record, start_weights
from regcli.jobs.runs import Action, Done, Outcome, Plan, check_resumable, relative
from regcli.plots.figures import history_figure, save_figure
from regcli.store.checkpoints import save_run, save_run_state
from regcli.store.layout import (
    CHECKPOINT_NAME,
    LAST_NAME,
    METRICS_CSV_NAME,
    ONNX_NAME,
    figure_path,
    model_label,
)
from regcli.store.records import EpochRecord, write_metrics
from regcli.train.devices import out_of_memory
from regcli.train.trainer import MemberState, StopFlag, train_group


@dataclass
class Kept:
    """What an interrupted job has kept, for the one message that says so."""

    epochs_saved: int = 0  # epochs of the group in training when the job stopped
    epochs: int = 0  # of how many
    saved_in: str = ""  # where (a last.pt, or each model's)
    detail: str = ""  # groups side by side: what each stopped one kept

    def text(self) -> str:
        if self.detail:
            return self.detail
        if not self.epochs_saved:
            return "no epoch was completed"
        return f"epoch {self.epochs_saved}/{self.epochs} is saved in {self.saved_in}"


class GroupTooLarge(Exception):
    """A group ran out of GPU memory before its first epoch: train it in halves instead."""


class GroupRun:
    """One group's run record and its last.pt saves, shared by its members."""

    def __init__(self, group: list[Plan], device: torch.device, options: RunOptions):
        self.group, self.device = group, device
        self.members = [relative(p.model_dir, options.models_dir) for p in group]
        self.run = {
            "started": utc_now(),
            "command": list(options.command),
            "device": device.type,
            "deterministic": options.deterministic,
            **({"threads": torch.get_num_threads()} if device.type == "cpu" else {}),
            "seconds": 0.0,
            "resumed_by": [],
        }
        self.resume = None
        if group[0].action == Action.resume:
            now = dict(self.run)
            self.run = {**self.run, **group[0].last["run"]}
            check_resumable(group[0].model_dir, self.run, now)
            self.run["resumed_by"] = [*self.run["resumed_by"], list(options.command)]
            self.resume = [member_state(p.last) for p in group]
        self.start = None if self.resume else [start_weights(p) for p in group]
        self.epochs_saved = max(len(m.history) for m in self.resume) if self.resume else 0
        self.run.setdefault("sources", [str(p.start) if p.start else None for p in group])
        self.clock, self.before = time.perf_counter(), self.run["seconds"]

    def seconds(self) -> float:
        return round(self.before + time.perf_counter() - self.clock, 3)

    def membership(self, index: int) -> dict:
        return {"size": len(self.group), "index": index, "members": self.members}

    def save_last(self, states: list[MemberState]) -> None:
        """After every epoch: each member's whole state in its last.pt."""
        self.epochs_saved = max(len(s.history) for s in states)  # the group saves together
        self.run["seconds"] = self.seconds()
        for index, (plan, state) in enumerate(zip(self.group, states, strict=True)):
            save_run_state(
                plan.model_dir,
                {
                    "config": plan.config.as_dict(),
                    "weights": state.weights,
                    "momentum": state.momentum,
                    "history": [r.as_dict() for r in state.history],
                    "diverged": state.diverged,
                    "mask": state.mask,
                    "group": self.membership(index),
                    "run": self.run,
                },
            )

    def record(self, index: int, info: dict) -> dict:
        """A finished member's run record."""
        resumed = {"resumed_by": self.run["resumed_by"]} if self.run["resumed_by"] else {}
        threads = {"threads": self.run["threads"]} if "threads" in self.run else {}
        return run_record(
            self.run["command"],
            self.run["started"],
            str(self.device),
            seconds=self.seconds(),
            group=self.membership(index),
            deterministic=info["deterministic"],
            cuda_graphs=info["cuda_graphs"],
            **resumed,
            **threads,
            **source_record(self.run["sources"][index]),
        )


def train_one_group(
    group: list[Plan],
    splits,
    device: torch.device,
    options: RunOptions,
    reporter: Reporter,
    stop: StopFlag,
    progress: Kept,
) -> list[tuple[Plan, Outcome]]:
    """Train one group and save its members (GroupTooLarge if it does not fit in GPU memory)."""
    run = GroupRun(group, device, options)
    label = model_label(group[0].model_dir) if len(group) == 1 else f"{len(group)} models"
    progress.epochs = group[0].config.epochs
    one = str(group[0].model_dir / LAST_NAME)
    progress.saved_in = one if len(group) == 1 else f"each model's {LAST_NAME}"

    def save_last(states: list[MemberState]) -> None:
        run.save_last(states)
        progress.epochs_saved = run.epochs_saved

    progress.epochs_saved = run.epochs_saved
    try:
        states, info = train_group(
            [p.config for p in group],
            *splits,
            device,
            reporter=reporter,
            resume=run.resume,
            start=run.start,
            on_epoch=save_last,
            stop=stop,
            deterministic=options.deterministic,
            label=label,
        )
    except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            raise
        if run.epochs_saved or len(group) == 1:
            raise RegcliError(
                f"out of GPU memory training {label}; try a smaller --group-size"
            ) from None
        raise GroupTooLarge from None
    return [
        (plan, save_member(plan, state, run.record(index, info), options.images_dir))
        for index, (plan, state) in enumerate(zip(group, states, strict=True))
    ]


def member_state(last: dict) -> MemberState:
    return MemberState(
        weights=last["weights"],
        momentum=last["momentum"],
        history=[EpochRecord.from_dict(r) for r in last["history"]],
        diverged=last.get("diverged"),
        mask=last.get("mask"),
    )


def save_member(plan: Plan, state: MemberState, record: dict, images_dir: Path | None) -> Outcome:
    """A finished member as an ordinary model folder (or a diverged one as its metrics)."""
    model_dir, history = plan.model_dir, [r.as_dict() for r in state.history]
    figure = figure_path(images_dir, model_label(model_dir), "history") if images_dir else None
    stale = [model_dir / ONNX_NAME]  # exported from whatever was here before
    if state.diverged:  # what an earlier run of this folder left no longer describes it
        stale += [model_dir / CHECKPOINT_NAME]
        for leftover in [model_dir / METRICS_CSV_NAME, *filter(None, [figure])]:
            leftover.unlink(missing_ok=True)
        write_metrics(model_dir, plan.config, history, record, diverged=state.diverged)
        action = Done.diverged
    else:
        save_run(model_dir, state.weights, plan.config, history, record, mask=state.mask)
        if figure is not None:
            save_figure(history_figure(model_label(model_dir), history), figure)
        action = Done.resumed if plan.action == Action.resume else Done.trained
    for path in [*stale, model_dir / LAST_NAME]:
        path.unlink(missing_ok=True)
    return Outcome(model_dir, plan.config, action, history, state.diverged)
