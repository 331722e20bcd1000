"""Terminal output: one stderr console for progress and errors, stdout left for results."""

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # the trainer loads PyTorch, which commands on ONNX models never need
    from regcli.train import EpochRecord

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


class TrainingReporter:
    """A per-epoch progress bar (only on a terminal, unless quiet) and one line per epoch."""

    def __init__(self, name: str, quiet: bool = False):
        self.name = name
        self.progress = None
        if not quiet and stderr.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            )
        self.task = None

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def epoch_started(self, epoch: int, steps: int) -> None:
        if self.progress:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"{self.name} epoch {epoch}", total=steps)

    def step_done(self) -> None:
        if self.progress:
            self.progress.advance(self.task)

    def epoch_finished(self, record: "EpochRecord", epochs: int) -> None:
        stderr.print(
            f"{self.name} epoch {record.epoch:>2}/{epochs}  "
            f"train loss {record.train_loss:.4f}  penalty {record.penalty:.4f}  "
            f"train acc {100 * record.train_accuracy:.2f}%  "
            f"test loss {record.test_loss:.4f}  test acc {100 * record.test_accuracy:.2f}%  "
            f"lr {record.lr:.4g}  {record.seconds:.1f}s"
        )
