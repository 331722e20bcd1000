"""Side by side on a CPU: a job's groups trained by a pool of processes, one thread each.

On a CPU a model on one thread never spins against other work: on a busy machine it trains far
faster than on every core, and models side by side, one process of one thread per core, finish
a long job sooner than one after another on every core (`make bench` measures both). So on a
CPU the runner hands each group (one model, unless --group-size says otherwise) to a pool of
`--jobs` processes (default: one per core, for a job long enough to pay for starting them),
each on `--threads` threads (default 1).

A process trains a group with the runner's own code (the parent holds every folder's lock):
last.pt after every epoch, the same identity checks and saving. Its events come to the parent
through a queue, where the reporter draws one line per running model. Ctrl-C or SIGTERM reaches
the parent, which tells every process to stop at its next batch boundary and waits for them; a
SIGTERM sent to one process stops that one alone. A group that fails comes back as its error,
and the other processes go on.
"""

import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from regcli.core.config import RunOptions
from regcli.core.errors import RegcliError, first_line
from regcli.core.events import Reporter
from regcli.data.mnist import load_split
from regcli.train.devices import CPU_THREADS, usable_cores

WATCHED = {signal.SIGINT, signal.SIGTERM}
POLL_SECONDS = 0.2  # how often the parent looks for a stop request while it waits
STEP_EVENT_SECONDS = 0.5  # a process reports its steps at most this often
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read once, as a process starts
DEBUG_ENV = "REGCLI_DEBUG"  # a failed group's error comes back with its traceback


@dataclass
class TaskResult:
    """What one process made of its group: each member's outcome, or an error, or a stop."""

    task: int  # the group's index in the job
    outcomes: list = field(default_factory=list)  # one Outcome per member, when it finished
    error: str | None = None  # why the group failed
    code: int = 1  # and the exit code its error calls for
    signal_number: int | None = None  # stopped at a batch boundary by this signal
    kept: Any = None  # the runner's Kept: epochs saved in last.pt


# (model, step) pairs a CPU job needs before its models go side by side by default: each process
# starts PyTorch and loads MNIST first (make bench: 2 models of 47 steps each ran slower side by
# side than one after another; the main job's 28,000 ran in 0.82x the time)
MIN_POOL_STEPS = 2_000


def jobs_for(options: RunOptions, groups: int) -> int:
    """Processes side by side: --jobs, else one per usable core, never more than the groups."""
    return max(1, min(options.jobs or usable_cores(), groups))


def processes_for(device: str, options: RunOptions, groups: int, steps: int) -> int:
    """How many processes a job of `groups` groups and `steps` (model, step) pairs trains in
    (1: in turn, in this one): on a CPU with --jobs N > 1, or by default when the job is long
    enough to pay for starting them; on a GPU a group trains its models at once instead."""
    jobs = jobs_for(options, groups)
    if device != "cpu" or jobs < 2 or not (options.jobs or steps >= MIN_POOL_STEPS):
        return 1
    return jobs


# --- in each process ------------------------------------------------------------------------

_process: dict = {}  # this process's stop flag, event queue and MNIST splits (start_process)


class SharedStop:
    """The trainer's stop flag in a process: set by the parent for every process, by a SIGTERM
    sent to this process alone, or by the parent's death (its locks are gone with it)."""

    def __init__(self, shared):
        self.shared, self.own, self.parent = shared, None, os.getppid()

    @property
    def signal_number(self) -> int | None:
        if os.getppid() != self.parent:
            return signal.SIGTERM
        return self.own or self.shared.value or None


def start_process(shared, events, data_dir, threads: int) -> None:
    """Each process's start: signals (blocked by the parent while it started this process,
    so none was lost or fatal meanwhile), its thread count, and the data, loaded once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which relays it
    stop = SharedStop(shared)
    watch_own_stop(stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
    torch.set_num_threads(threads)
    try:
        splits = load_split(data_dir, "train"), load_split(data_dir, "test")
    except Exception as error:  # said by each task of this process, as its group's error
        splits = error
    _process.update(stop=stop, events=events, splits=splits)


def watch_own_stop(stop: SharedStop) -> None:
    """A SIGTERM sent to this process stops its group at a batch boundary (a second one, at
    once)."""

    def stop_this_one(number, _frame):
        stop.own = number
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, stop_this_one)


def process_context() -> dict:
    """What start_process set up: `stop`, `events`, `splits`."""
    return _process


def failure(error: BaseException) -> str:
    """A failed group's error as one line (with its traceback under REGCLI_DEBUG=1)."""
    if isinstance(error, RegcliError | OSError):
        line = first_line(error)
    else:  # a bug: say what it was
        line = f"{type(error).__name__}: {first_line(error)}"
    return line + ("\n" + traceback.format_exc() if os.environ.get(DEBUG_ENV) else "")


class Forwarder(Reporter):
    """A process's reporter: its group's events go to the parent, tagged with the task; steps
    are counted and sent at most every STEP_EVENT_SECONDS, with the running loss."""

    def __init__(self, task: int, events):
        self.task, self.events = task, events
        self.steps, self.sent = 0, time.monotonic()
        self.loss: Callable[[], float | None] = lambda: None

    def send(self, name: str, *args) -> None:
        self.events.put((self.task, name, args))

    def run_started(self, *args) -> None:
        self.send("run_started", *args)

    def epoch_started(self, epoch: int, running_loss) -> None:
        self.loss = running_loss
        self.send("epoch_started", epoch)

    def step_done(self) -> None:
        self.steps += 1
        if time.monotonic() - self.sent >= STEP_EVENT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.steps:
            self.send("steps", self.steps, self.loss())
            self.steps, self.sent = 0, time.monotonic()

    def testing(self) -> None:
        self.flush()
        self.send("testing")

    def epoch_finished(self, epoch: int, records: list, notes: list[str]) -> None:
        self.flush()
        self.send("epoch_finished", epoch, records, notes)

    def finished(self) -> None:
        self.flush()
        self.send("finished")


# --- in the parent --------------------------------------------------------------------------


def relay(events, reporter: Reporter) -> None:
    """The parent's thread that hands each process's events to that task's reporter."""
    members: dict[int, Reporter] = {}
    losses: dict[int, float | None] = {}
    while (message := events.get()) is not None:
        try:
            task, name, args = message
            if task not in members:
                members[task] = reporter.member(task)
            member = members[task]
            if name == "epoch_started":
                member.epoch_started(args[0], lambda task=task: losses.get(task))
            elif name == "steps":
                losses[task] = args[1]
                for _ in range(args[0]):
                    member.step_done()
            else:
                getattr(member, name)(*args)
        except Exception:  # progress is never worth a stuck job: read on, say it when debugging
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()


@contextmanager
def thread_environment(threads: int) -> Iterator[None]:
    """The processes started meanwhile read `threads` from the environment as they start."""
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def train_side_by_side(
    groups: list,
    options: RunOptions,
    reporter: Reporter,
    stop,
    task: Callable,
    finished: Callable[[TaskResult], None],
) -> list[TaskResult]:
    """Each group to `task(index, group, options)` in a pool of processes (started with
    start_process); `finished(result)` as each one ends. On a stop request (`stop`, the
    parent's flag) the groups not yet started are dropped and the running ones stop at their
    next batch boundary."""
    threads = options.threads or CPU_THREADS
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads
    shared, events = context.Value("i", 0), context.Queue()
    relaying = threading.Thread(target=relay, args=(events, reporter), daemon=True)
    relaying.start()
    results: list[TaskResult] = []
    setup = (shared, events, options.data_dir, threads)
    try:
        with (
            thread_environment(threads),
            ProcessPoolExecutor(
                jobs_for(options, len(groups)),
                mp_context=context,
                initializer=start_process,
                initargs=setup,
            ) as pool,
        ):
            running = submit_all(pool, task, groups, options)
            try:
                while running:
                    done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                    if stop.signal_number and not shared.value:
                        shared.value = stop.signal_number  # each stops at a batch boundary
                        running = {f: i for f, i in running.items() if not f.cancel()}
                    for future in done:
                        results.append(result_of(future, running.pop(future)))
                        finished(results[-1])
            except BaseException:  # a second Ctrl-C, say: stop every process, then go
                shared.value = shared.value or signal.SIGINT
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        events.put(None)
        relaying.join(timeout=5)
    return results


def submit_all(pool, task: Callable, groups: list, options: RunOptions) -> dict[Future, int]:
    """Every group handed over, with Ctrl-C and SIGTERM held back meanwhile: the processes
    start with them blocked (and unblock them once they can handle them), so a signal in
    their first seconds is neither lost nor fatal."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    try:
        return {pool.submit(task, i, group, options): i for i, group in enumerate(groups)}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def result_of(future: Future, task: int) -> TaskResult:
    """A task's result; a group whose result could not come back fails alone, but a dead
    process stops the job (the pool cannot go on without it)."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise RegcliError(
            "a training process died (killed from outside, or out of memory); every model's "
            "last saved epoch is kept: run the same command to continue"
        ) from None
    except Exception as error:  # e.g. a result that could not be sent back
        return TaskResult(task, error=failure(error))
