"""The runner: a job's pending runs trained in groups, each member saved as a model folder.

`train_job` claims the folders (runs.py), trains what needs training through the one trainer
(train.py, one group at a time: group_run.py), and saves every member. On CUDA a group holds all
the models that fit, and a group that runs out of memory before its first epoch is split in
halves. On a CPU each group is one model on one thread, and the groups train side by side in a
pool of processes, one per core (pool.py; --jobs, --threads). A group that fails is reported as
failed and the others go on.

After every epoch each run's state goes to <model_dir>/last.pt, atomically. Ctrl-C or SIGTERM
stops at the next batch boundary; the same command with --resume (or, for seeds and sweeps, the
same command) continues from last.pt and ends exactly where an uninterrupted run would (same
device, same group). When the run finishes, model.pt and the metrics replace last.pt.
"""

import signal
from contextlib import nullcontext, suppress
from pathlib import Path

import torch

from regcli.core.config import Existing, RunOptions, group_key
from regcli.core.errors import Interrupted
from regcli.core.events import Reporter
from regcli.core.files import ensure_writable, writable_target
from regcli.data.mnist import load_split
from regcli.jobs.group_run import GroupTooLarge, Kept, train_one_group
from regcli.jobs.pool import (
    Forwarder,
    TaskResult,
    failure,
    process_context,
    processes_for,
    train_side_by_side,
    watch_own_stop,
)
from regcli.jobs.runs import (
    Action,
    Done,
    Outcome,
    Plan,
    Request,
    State,
    claim,
    group_name,
    resume_groups,
)
from regcli.store.layout import (
    CHECKPOINT_NAME,
    LAST_NAME,
    METRICS_CSV_NAME,
    METRICS_NAME,
    figure_path,
    model_label,
)
from regcli.store.records import load_metrics
from regcli.train.devices import CPU_THREADS, cpu_threads, default_group_size, resolve_device
from regcli.train.trainer import StopFlag

NO_REPORTER = Reporter()  # a job nobody watches


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
            raise Interrupted(
                f"{stopped}; {progress.text()}",
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
    check_targets(pending, options)
    groups = resume_groups([p for p in pending if p.action == Action.resume], options.models_dir)
    size = options.group_size or default_group_size(device)
    groups += fresh_groups([p for p in pending if p.action == Action.train], size)
    steps = sum(model_steps(g, len(splits[0])) for g in groups)
    reporter.job_started(steps)

    def keep(plan: Plan, outcome: Outcome) -> None:
        outcomes[id(plan)] = outcome
        groups_saved.saved(outcome, reporter)

    with StopSignals() as stop:
        if side_by_side(device, options, groups, steps):
            train_in_pool(groups, options, reporter, stop, progress, keep)
        else:
            train_in_turn(groups, splits, device, options, (reporter, stop, progress), keep)
    return [outcomes[id(p)] for p in plans]


def check_targets(pending: list[Plan], options: RunOptions) -> None:
    """Before any work: every file a run writes can be written, and nothing stale is left."""
    images = {Path(options.images_dir)} if options.images_dir else set()
    for plan in pending:  # a link or a FIFO where a run's file goes: refused before any work
        for target in run_files(plan.model_dir, options.images_dir):
            writable_target(target)
    for folder in {p.model_dir for p in pending} | images:
        ensure_writable(folder)  # fail now, not after the whole run
    for plan in pending:
        remove_stale_temporaries(plan.model_dir)


def side_by_side(device: torch.device, options: RunOptions, groups: list, steps: int) -> bool:
    """On a CPU several groups train in a pool of processes (jobs/pool.py): with --jobs N > 1,
    or by default when the job is long enough to pay for starting them; on a GPU a group trains
    its models at once instead (--jobs does not apply)."""
    return processes_for(device.type, options, len(groups), steps) > 1


def train_in_turn(groups, splits, device, options: RunOptions, watch: tuple, keep) -> None:
    """The groups one after another in this process (on a CPU on --threads threads); a group
    that fails is recorded as failed and the others go on."""
    reporter, stop, progress = watch
    threads = options.threads or CPU_THREADS
    with cpu_threads(threads) if device.type == "cpu" else nullcontext():
        while groups:
            group = groups.pop(0)
            try:
                saved = train_one_group(group, splits, device, options, reporter, stop, progress)
            except GroupTooLarge:  # out of GPU memory before its first epoch: halve it
                torch.cuda.empty_cache()
                groups[:0] = [group[: len(group) // 2], group[len(group) // 2 :]]
                continue
            except Interrupted:
                raise
            except Exception as error:  # a bad member fails alone, as in the pool
                saved = [(p, failed(p, failure(error), error)) for p in group]
            for plan, outcome in saved:
                keep(plan, outcome)


def train_in_pool(groups, options: RunOptions, reporter, stop, progress: Kept, keep) -> None:
    """The groups side by side in processes of one thread each (regcli/jobs/pool.py); raises
    Interrupted, after every process has stopped, if any was stopped."""
    stopped: list[tuple[list[Plan], TaskResult]] = []
    failures: list[Outcome] = []

    def finished(result: TaskResult) -> None:
        group = groups[result.task]
        if result.signal_number is not None:
            stopped.append((group, result))
        elif result.error is not None:
            for plan in group:
                failures.append(failed(plan, result.error, code=result.code))
                keep(plan, failures[-1])
        else:
            for plan, outcome in zip(group, result.outcomes, strict=True):
                keep(plan, outcome)

    train_side_by_side(groups, options, reporter, stop, train_task, finished)
    if stopped or stop.signal_number:
        began = sorted((r.task, g, r.kept) for g, r in stopped if r.kept is not None)
        parts = [f"{model_label(g[0].model_dir)}: {kept.text()}" for _, g, kept in began]
        parts += [f"{o.model_dir} failed ({o.error})" for o in failures]
        progress.epochs_saved = max((kept.epochs_saved for *_, kept in began), default=0)
        progress.detail = "; ".join(parts) or "no epoch was completed"
        number = stop.signal_number or stopped[0][1].signal_number
        raise Interrupted("stopped at a batch boundary", number)


def train_task(task: int, group: list[Plan], options: RunOptions) -> TaskResult:
    """One group, in a process of the pool (pool.start_process has set the process up)."""
    here = process_context()
    stop = here["stop"]
    if stop.shared.value:  # the job stopped before this group began: as if never handed over
        return TaskResult(task, signal_number=stop.shared.value)
    if isinstance(here["splits"], Exception):  # this process could not load the data
        return TaskResult(task, error=failure(here["splits"]))
    reporter, progress = Forwarder(task, here["events"]), Kept()
    cpu = torch.device("cpu")
    try:
        saved = train_one_group(group, here["splits"], cpu, options, reporter, stop, progress)
    except Interrupted as stopped:
        stop.own = None  # a SIGTERM to this process stopped this group alone
        watch_own_stop(stop)
        return TaskResult(task, signal_number=stopped.signal_number, kept=progress)
    except Exception as error:  # the group fails alone; the parent says why
        return TaskResult(task, error=failure(error), code=getattr(error, "exit_code", 1))
    finally:
        reporter.finished()
    return TaskResult(task, outcomes=[outcome for _, outcome in saved])


def failed(plan: Plan, error: str, exception: BaseException | None = None, code: int = 1):
    """A run whose group failed: what the job reports for it (its folder keeps what it had)."""
    code = getattr(exception, "exit_code", code)
    return Outcome(plan.model_dir, plan.config, Done.failed, error=error, code=code)


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
