"""What a job tells whoever watches it: one reporter for every event, a no-op by default.

The trainer reports its run, epochs and steps (from each process, when models train side by
side); the runner reports the job's size, what it
reuses or resumes, each model it saves and each seed group (a sweep's cell) it completes.
`Reporter` does nothing with any of them, so core code calls it without checking for one; the
CLI's `console.TrainingReporter` draws bars and prints lines, and tests subclass it.
"""

from collections.abc import Callable
from typing import Any


class Reporter:
    """Every job event, each a no-op here."""

    def job_started(self, model_steps: int) -> None:
        """Once per job: the (model, step) pairs of every group it will train."""

    def announce(self, message: str) -> None:
        """A line about the plan: a taken name, a reused or resumed folder."""

    def run_started(
        self, label: str, members: int, epochs: int, steps: int, first_epoch: int
    ) -> None:
        """A group of `members` models starts (or resumes at first_epoch)."""

    def epoch_started(self, epoch: int, running_loss: Callable[[], float | None]) -> None:
        """An epoch starts; running_loss() reads the epoch's mean data loss so far."""

    def step_done(self) -> None:
        """One optimizer step of every member of the group."""

    def testing(self) -> None:
        """The epoch's test pass starts."""

    def epoch_finished(self, epoch: int, records: list, notes: list[str]) -> None:
        """Each member's EpochRecord (None once it has diverged), and warnings to show."""

    def saved(self, outcome: Any) -> None:
        """A model folder is complete: trained, resumed, reused or recorded as diverged."""

    def member(self, task: int) -> "Reporter":
        """Who watches the group of the job's task-th index while groups train side by side
        (regcli/jobs/pool.py): its run, epoch and step events go there. By default, this one."""
        return self

    def finished(self) -> None:
        """A group trained side by side has ended (its reporter from `member`)."""

    def group_done(self, name: str, done: int, total: int) -> None:
        """Every seed of one configuration (a sweep's cell) is saved or reused: the done-th
        of the job's total."""
