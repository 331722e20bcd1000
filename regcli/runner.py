"""The runner: a job's pending runs trained in groups, each member saved as a model folder.

`train_job` claims the folders (runs.py), trains what needs training through the one trainer
(train.py), and saves every member. On CUDA a group holds all the models that fit, and a group
that runs out of memory before its first epoch is split in halves; on a CPU one model at a time.

After every epoch each run's state goes to <model_dir>/last.pt, atomically. Ctrl-C or SIGTERM
stops at the next batch boundary; the same command with --resume (or, for seeds and sweeps, the
same command) continues from last.pt and ends exactly where an uninterrupted run would (same
device, same group). When the run finishes, model.pt and the metrics replace last.pt.
"""

import signal
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import torch

from regcli.checkpoints import (
    save_run,
    save_run_state,
)
from regcli.config import Existing, RunOptions, group_key
from regcli.data import load_split
from regcli.devices import default_group_size, out_of_memory, resolve_device
from regcli.errors import Interrupted, RegcliError
from regcli.events import Reporter
from regcli.files import ensure_writable, writable_target
from regcli.layout import CHECKPOINT_NAME, LAST_NAME, ONNX_NAME, figure_path, model_label
from regcli.outcomes import Done, Outcome
from regcli.plots import history_figure, save_figure
from regcli.provenance import run_record, utc_now
from regcli.pruned_runs import source_record, start_weights
from regcli.records import METRICS_CSV_NAME, METRICS_NAME, EpochRecord, load_metrics, write_metrics
from regcli.runs import (
    Action,
    Plan,
    Request,
    State,
    check_resumable,
    claim,
    group_name,
    relative,
    resume_groups,
)
from regcli.train import MemberState, StopFlag, train_group

NO_REPORTER = Reporter()  # a job nobody watches


@dataclass
class Kept:
    """What an interrupted job has kept, for the one message that says so."""

    epochs_saved: int = 0  # epochs of the group in training when the job stopped
    epochs: int = 0  # of how many
    saved_in: str = ""  # where (a last.pt, or each model's)


# --- the job --------------------------------------------------------------------------------


def train_job(
    requests: list[Request], options: RunOptions, reporter: Reporter = NO_REPORTER
) -> list[Outcome]:
    """Claim the folders, say what is reused or resumed, train the rest, save every model."""
    with claim(requests, options) as plans:
        used = group_name(plans[0].model_dir, requests[0])
        if options.versioned and options.existing != Existing.force and used != requests[0].name:
            reporter.announce(
                f"{options.models_dir / requests[0].name} is taken; training into "
                f"{options.models_dir / used}"
            )
        resume_groups([p for p in plans if p.action == Action.resume], options.models_dir)
        for plan in plans:
            if plan.action != Action.train:
                verb = "reusing" if plan.action == Action.reuse else "resuming"
                reporter.announce(f"{verb} {plan.model_dir}")
        progress = Kept()
        try:
            return train_plans(plans, options, reporter, progress)
        except Interrupted as stopped:  # the one place that says what was kept
            kept = (
                f"epoch {progress.epochs_saved}/{progress.epochs} is saved in {progress.saved_in}"
                if progress.epochs_saved
                else "no epoch was completed"
            )
            raise Interrupted(
                f"{stopped}; {kept}",
                stopped.signal_number,
                epochs_saved=progress.epochs_saved,
                folder=used,
                needs_force=any(p.previous != State.empty for p in plans),
            ) from None


class SeedGroups:
    """Counts each seed group's saved members, to report a group (a sweep's cell) once all its
    seeds are saved or reused."""

    def __init__(self, plans: list[Plan]):
        self.left: dict[Path, int] = {}
        for plan in plans:
            self.left[plan.model_dir.parent] = self.left.get(plan.model_dir.parent, 0) + 1
        self.total, self.done = len(self.left), 0

    def saved(self, outcome: Outcome, reporter: Reporter) -> None:
        reporter.saved(outcome)
        folder = Path(outcome.model_dir).parent
        self.left[folder] -= 1
        if self.left[folder] == 0:
            self.done += 1
            reporter.group_done(folder.name, self.done, self.total)


def train_plans(
    plans: list[Plan], options: RunOptions, reporter: Reporter, progress: Kept
) -> list[Outcome]:
    """Train (or resume) every plan that needs it, in groups, and save each member's folder.
    Returns one outcome per plan, in order."""
    pending = [p for p in plans if p.action != Action.reuse]
    outcomes = {id(p): reused(p) for p in plans if p.action == Action.reuse}
    groups_saved = SeedGroups(plans)
    for outcome in outcomes.values():
        groups_saved.saved(outcome, reporter)
    if not pending:
        return [outcomes[id(p)] for p in plans]
    device = resolve_device(options.device)
    splits = load_split(options.data_dir, "train"), load_split(options.data_dir, "test")
    images = {Path(options.images_dir)} if options.images_dir else set()
    for plan in pending:  # a link or a FIFO where a run's file goes: refused before any work
        for target in run_files(plan.model_dir, options.images_dir):
            writable_target(target)
    for folder in {p.model_dir for p in pending} | images:
        ensure_writable(folder)  # fail now, not after the whole run
    for plan in pending:
        remove_stale_temporaries(plan.model_dir)
    groups = resume_groups([p for p in pending if p.action == Action.resume], options.models_dir)
    size = options.group_size or default_group_size(device)
    groups += fresh_groups([p for p in pending if p.action == Action.train], size)
    reporter.job_started(sum(model_steps(g, len(splits[0])) for g in groups))
    with StopSignals() as stop:
        while groups:
            group = groups.pop(0)
            try:
                saved = train_one_group(group, splits, device, options, reporter, stop, progress)
            except GroupTooLarge:  # out of GPU memory before its first epoch: halve it
                torch.cuda.empty_cache()
                groups[:0] = [group[: len(group) // 2], group[len(group) // 2 :]]
                continue
            for plan, outcome in saved:
                outcomes[id(plan)] = outcome
                groups_saved.saved(outcome, reporter)
    return [outcomes[id(p)] for p in plans]


def fresh_groups(plans: list[Plan], size: int) -> list[list[Plan]]:
    """New runs in groups of at most `size`, members of a group sharing epochs and batches."""
    by_key: dict[tuple, list[Plan]] = {}
    for plan in plans:
        by_key.setdefault(group_key(plan.config), []).append(plan)
    return [found[i : i + size] for found in by_key.values() for i in range(0, len(found), size)]


def model_steps(group: list[Plan], train_images: int) -> int:
    """How many (model, step) pairs a group has left to train: the job's unit of progress."""
    config = group[0].config
    per_pass = -(-min(config.train_images, train_images) // config.batch_size)
    steps = config.passes_per_epoch * per_pass
    done = len(group[0].last["history"]) if group[0].action == Action.resume else 0
    return len(group) * (config.epochs - done) * steps


def run_files(model_dir: Path, images_dir: Path | None) -> list[Path]:
    """Every file a run writes: its folder's, and its history figure."""
    names = [CHECKPOINT_NAME, LAST_NAME, METRICS_NAME, METRICS_CSV_NAME]
    figure = [figure_path(images_dir, model_label(model_dir), "history")] if images_dir else []
    return [Path(model_dir) / name for name in names] + figure


def remove_stale_temporaries(model_dir: Path) -> None:
    """Temporary files a killed writer left in this run's own folder (it holds the lock)."""
    for leftover in Path(model_dir).glob(".*.tmp"):
        with suppress(OSError):
            leftover.unlink()


def reused(plan: Plan) -> Outcome:
    metrics = load_metrics(plan.model_dir)
    return Outcome(
        plan.model_dir, plan.config, Done.reused, metrics["epochs"], metrics.get("diverged")
    )


class StopSignals:
    """SIGINT and SIGTERM set a flag the trainer checks between batches (a second one kills)."""

    watched = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopFlag:
        self.flag = StopFlag()

        def request_stop(number, _frame):
            self.flag.signal_number = number
            for s in self.watched:  # a second signal gets the default behaviour: stop now
                signal.signal(s, self.previous[s])

        self.previous = {s: signal.signal(s, request_stop) for s in self.watched}
        return self.flag

    def __exit__(self, *exc):
        for s in self.watched:
            signal.signal(s, self.previous[s])


# --- one group ------------------------------------------------------------------------------


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
            "seconds": 0.0,
            "resumed_by": [],
        }
        self.resume = None
        if group[0].action == Action.resume:
            self.run = {**self.run, **group[0].last["run"]}
            check_resumable(group[0].model_dir, self.run, device, options.deterministic)
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
        return run_record(
            self.run["command"],
            self.run["started"],
            str(self.device),
            seconds=self.seconds(),
            group=self.membership(index),
            deterministic=info["deterministic"],
            cuda_graphs=info["cuda_graphs"],
            **resumed,
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
