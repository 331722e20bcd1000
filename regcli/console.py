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

from regcli.events import Reporter
from regcli.tables import clock
from regcli.text import terminal_safe

if TYPE_CHECKING:  # the trainer loads PyTorch, which commands on ONNX models never need
    from regcli.records import EpochRecord

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
    """Epoch k/N, a bar over the epoch's steps, images/s, running loss and time left for the
    run (on a terminal); one summary line per epoch (always, unless quiet)."""

    def __init__(self, quiet: bool = False, batch_size: int = 128, groups: str | None = None):
        """groups: what to call a seed group when all its seeds are done ("cell" for a sweep),
        or None to say nothing then."""
        self.quiet, self.batch_size, self.groups = quiet, batch_size, groups
        self.progress = live_bar() if not quiet and stderr.is_terminal else None
        self.task = None
        self.running_loss: Callable[[], float | None] = lambda: None
        self.job_total, self.job_done, self.job_started_at = 0, 0, time.perf_counter()
        self.epoch = self.epoch_steps = 0
        self.last_line = time.perf_counter()
        self.header: str | None = None

    def job_started(self, model_steps: int) -> None:
        """Every group of the command together: time left is for all of them."""
        self.job_total, self.job_done, self.job_started_at = model_steps, 0, time.perf_counter()

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def run_started(self, label: str, members: int, epochs: int, steps: int, first_epoch: int):
        self.label, self.members, self.epochs, self.steps = label, members, epochs, steps
        self.remaining_steps = (epochs - first_epoch + 1) * steps
        self.done_steps, self.started = 0, time.perf_counter()
        self.last_line = self.started
        what = f"{members} models" if members > 1 else "one model"
        # said with the run's first line (a run that fails at once says only its error)
        self.header = f"{label}: epochs {first_epoch}-{epochs} of {steps:,} steps, {what}"
        if self.progress:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(label, total=steps, info="")

    def epoch_started(self, epoch: int, running_loss: Callable[[], float | None]) -> None:
        self.epoch, self.running_loss = epoch, running_loss
        self.epoch_clock = time.perf_counter()
        self.epoch_steps = 0
        if self.progress:
            self.progress.reset(self.task, total=self.steps, info="")
            self.progress.update(self.task, description=f"{self.label} epoch {epoch}/{self.epochs}")

    def step_done(self) -> None:
        self.done_steps += 1
        self.epoch_steps += 1
        self.job_done += self.members
        now = time.perf_counter()
        if not self.progress and (self.quiet or now - self.last_line < PERIODIC_SECONDS):
            return
        elapsed = now - self.started
        rate = self.done_steps / elapsed if elapsed else 0
        left = (self.remaining_steps - self.done_steps) / rate if rate else None
        if self.job_total:  # the whole job (test passes included), at its own pace so far
            job_rate = self.job_done / (now - self.job_started_at)
            left = (self.job_total - self.job_done) / job_rate if job_rate else None
        images = rate * self.batch_size * self.members
        loss = self.running_loss()
        info = f"{images:,.0f} img/s" + (f"  loss {loss:.4f}" if loss is not None else "")
        if self.progress:
            self.progress.update(self.task, advance=1, info=f"{info}  {clock(left)} left")
            return
        self.last_line = now  # a log's periodic line
        self.say_header()
        stderr.print(
            f"  epoch {self.epoch:>2}/{self.epochs}  step {self.epoch_steps:,}/{self.steps:,}  "
            f"{info}  {clock(left)} left",
            markup=False,
        )

    def say_header(self) -> None:
        if self.header:
            say(self.header, self.quiet)
            self.header = None

    def announce(self, message: str) -> None:
        """A line about the plan (a reused or resumed folder), kept above the live bar."""
        say(message, self.quiet)

    def group_done(self, name: str, done: int, total: int) -> None:
        if self.groups:
            say(f"{self.groups} {name} done ({done}/{total})", self.quiet)

    def testing(self) -> None:
        if self.progress:
            self.progress.update(
                self.task, description=f"{self.label} epoch {self.epoch}/{self.epochs} testing"
            )

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
            stderr.print(epoch_line(live[0], self.epochs), markup=False)
        elif live:
            accuracies = [100 * r.test_accuracy for r in live]
            loss = sum(r.train_loss for r in live) / len(live)
            stderr.print(
                f"  epoch {epoch:>2}/{self.epochs}  loss {loss:.4f} (mean)  "
                f"test {min(accuracies):.2f}-{max(accuracies):.2f}%  "
                f"{len(live)}/{len(records)} training  {seconds_text(seconds)}",
                markup=False,
            )


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
