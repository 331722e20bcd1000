"""Terminal output: results to stdout; progress, "wrote ..." lines and errors to stderr.

Live bars are drawn only when stderr is a terminal (and not with --quiet); the one-line summary
per training epoch is printed either way (logs rely on it), except with --quiet, and fits 80
columns (the run's name is said once, when it starts). Without a terminal a progress line comes
every PERIODIC_SECONDS within an epoch, so a log never goes silent for long.
"""

import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from regcli.core.events import Reporter
from regcli.core.tables import clock
from regcli.core.text import terminal_safe

if TYPE_CHECKING:  # the trainer loads PyTorch, which commands on ONNX models never need
    from regcli.store.records import EpochRecord

PERIODIC_SECONDS = 30.0  # without a terminal: a progress line this often within an epoch
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def say(message: str, quiet: bool = False) -> None:
    """An informational line on stderr ("wrote ...", "saved ..."), unless --quiet; names in it
    are shown terminal-safe."""
    if not quiet:
        stderr.print(terminal_safe(message), markup=False)


def warn(message: str) -> None:
    stderr.print(f"warning: {terminal_safe(message)}", markup=False)


def live_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        console=stderr,
        transient=True,
    )


class TrainingReporter(Reporter):
    """Epoch k/N, a bar over the epoch's steps, images/s, running loss and time left (on a
    terminal); one summary line per epoch (always, unless quiet). Groups that train side by
    side (member) each get their own bar and tagged lines, and a job bar shows the job's time
    left."""

    def __init__(self, quiet: bool = False, batch_size: int = 128, groups: str | None = None):
        """groups: what to call a seed group when all its seeds are done ("cell" for a sweep),
        or None to say nothing then."""
        self.quiet, self.batch_size, self.groups = quiet, batch_size, groups
        self.progress = live_bar() if not quiet and stderr.is_terminal else None
        self.job_total, self.job_done, self.job_started_at = 0, 0, time.perf_counter()
        self.job_task = None  # the job's own bar, once groups train side by side
        self.lane = Lane(self)  # the group training in this process

    def job_started(self, model_steps: int) -> None:
        """Every group of the command together: time left is for all of them."""
        self.job_total, self.job_done, self.job_started_at = model_steps, 0, time.perf_counter()

    def job_left(self, now: float) -> float | None:
        """The whole job's time left (test passes included), at its own pace so far."""
        rate = self.job_done / (now - self.job_started_at) if self.job_total else 0
        return (self.job_total - self.job_done) / rate if rate else None

    def stepped(self, models: int, now: float) -> None:
        self.job_done += models
        if self.job_task is not None:
            info = f"{clock(self.job_left(now))} left"
            self.progress.update(self.job_task, completed=self.job_done, info=info)

    def member(self, task: int) -> "Lane":
        if self.progress and self.job_task is None:
            self.job_task = self.progress.add_task("job", total=self.job_total or None, info="")
        return Lane(self, tag=f"#{task + 1}")

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def run_started(self, *args) -> None:
        self.lane.run_started(*args)

    def epoch_started(self, epoch: int, running_loss: Callable[[], float | None]) -> None:
        self.lane.epoch_started(epoch, running_loss)

    def step_done(self) -> None:
        self.lane.step_done()

    def testing(self) -> None:
        self.lane.testing()

    def epoch_finished(self, epoch: int, records: list, notes: list[str]) -> None:
        self.lane.epoch_finished(epoch, records, notes)

    def announce(self, message: str) -> None:
        """A line about the plan (a reused or resumed folder), kept above the live bar."""
        say(message, self.quiet)

    def group_done(self, name: str, done: int, total: int) -> None:
        if self.groups:
            say(f"{self.groups} {name} done ({done}/{total})", self.quiet)


class Lane(Reporter):
    """One training group's bar and lines. Alone (no tag), its bar shows the job's time left;
    side by side with others (tag "#k"), its own, and its lines start with the tag."""

    def __init__(self, owner: TrainingReporter, tag: str = ""):
        self.owner, self.tag, self.quiet = owner, tag, owner.quiet
        self.progress, self.task = owner.progress, None
        self.running_loss: Callable[[], float | None] = lambda: None
        self.epoch = self.epoch_steps = 0
        self.last_line = time.perf_counter()
        self.header: str | None = None

    def run_started(self, label: str, members: int, epochs: int, steps: int, first_epoch: int):
        self.label, self.members, self.epochs, self.steps = label, members, epochs, steps
        self.remaining_steps = (epochs - first_epoch + 1) * steps
        self.done_steps, self.started = 0, time.perf_counter()
        self.last_line = self.started
        what = f"{members} models" if members > 1 else "one model"
        # said with the run's first line (a run that fails at once says only its error)
        self.header = self.line(
            f"{label}: epochs {first_epoch}-{epochs} of {steps:,} steps, {what}"
        )
        if self.progress:
            self.finished()
            self.task = self.progress.add_task(self.line(label), total=steps, info="")

    def line(self, text: str) -> str:
        """Tagged lines are single-spaced, so that they fit 80 columns as untagged ones do."""
        return f"{self.tag} {' '.join(text.split())}" if self.tag else text

    def epoch_started(self, epoch: int, running_loss: Callable[[], float | None]) -> None:
        self.epoch, self.running_loss = epoch, running_loss
        self.epoch_clock = time.perf_counter()
        self.epoch_steps = 0
        if self.progress:
            self.progress.reset(self.task, total=self.steps, info="")
            description = self.line(f"{self.label} epoch {epoch}/{self.epochs}")
            self.progress.update(self.task, description=description)

    def step_done(self) -> None:
        self.done_steps += 1
        self.epoch_steps += 1
        now = time.perf_counter()
        self.owner.stepped(self.members, now)
        if not self.progress and (self.quiet or now - self.last_line < PERIODIC_SECONDS):
            return
        elapsed = now - self.started
        rate = self.done_steps / elapsed if elapsed else 0
        left = (self.remaining_steps - self.done_steps) / rate if rate else None
        if self.owner.job_total and not self.tag:  # alone: the whole job's time left
            left = self.owner.job_left(now)
        images = rate * self.owner.batch_size * self.members
        loss = self.running_loss()
        info = f"{images:,.0f} img/s" + (f"  loss {loss:.4f}" if loss is not None else "")
        if self.progress:
            self.progress.update(self.task, advance=1, info=f"{info}  {clock(left)} left")
            return
        self.last_line = now  # a log's periodic line
        self.say_header()
        job = f" (job {clock(self.owner.job_left(now))})" if self.tag else ""
        stderr.print(
            self.line(
                f"  epoch {self.epoch:>2}/{self.epochs}  step {self.epoch_steps:,}/{self.steps:,}"
                f"  {info}  {clock(left)} left{job}"
            ),
            markup=False,
        )

    def say_header(self) -> None:
        if self.header:
            say(self.header, self.quiet)
            self.header = None

    def testing(self) -> None:
        if self.progress:
            description = self.line(f"{self.label} epoch {self.epoch}/{self.epochs} testing")
            self.progress.update(self.task, description=description)

    def epoch_finished(self, epoch: int, records: list, notes: list[str]) -> None:
        for note in notes:
            warn(note)
        if self.quiet:
            return
        seconds = time.perf_counter() - self.epoch_clock
        live = [r for r in records if r is not None]
        self.last_line = time.perf_counter()
        if live:
            self.say_header()
        if len(records) == 1 and live:
            stderr.print(self.line(epoch_line(live[0], self.epochs)), markup=False)
        elif live:
            accuracies = [100 * r.test_accuracy for r in live]
            loss = sum(r.train_loss for r in live) / len(live)
            text = (
                f"  epoch {epoch:>2}/{self.epochs}  loss {loss:.4f} (mean)  "
                f"test {min(accuracies):.2f}-{max(accuracies):.2f}%  "
                f"{len(live)}/{len(records)} training  {seconds_text(seconds)}"
            )
            stderr.print(self.line(text), markup=False)

    def finished(self) -> None:
        """Its bar goes (the lines stay)."""
        if self.progress and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def epoch_line(record: "EpochRecord", epochs: int) -> str:
    """One epoch in 80 columns: data loss + penalty, train and test accuracy, and the test loss
    (or, with a validation split, the validation accuracy); metrics.csv holds every field."""
    last = (
        f"val {100 * record.val_accuracy:.2f}%"
        if record.val_accuracy is not None
        else f"({record.test_loss:.4f})"
    )
    return (
        f"  epoch {record.epoch:>2}/{epochs}  loss {record.train_loss:.4f}+{record.penalty:.4f}  "
        f"train {100 * record.train_accuracy:.2f}%  test {100 * record.test_accuracy:.2f}% "
        f"{last}  {seconds_text(record.seconds)}"
    )


def seconds_text(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


@contextmanager
def model_progress(total: int, what: str, quiet: bool = False):
    """A bar of models done / total with time left, for multi-model commands; yields advance()."""
    if quiet or not stderr.is_terminal or total < 2:
        yield lambda name="": None
        return
    progress = live_bar()
    started = time.perf_counter()
    task = progress.add_task(what, total=total, info="")
    done = 0

    def advance(name: str = "") -> None:
        nonlocal done
        done += 1
        rate = done / (time.perf_counter() - started)
        left = (total - done) / rate if rate else None
        progress.update(task, advance=1, info=f"{terminal_safe(name)}  {clock(left)} left")

    with progress:
        yield advance
