"""What a job says of each run it was asked for: reused, trained, resumed, diverged or failed,
with its final record (`--json`) and, for a divergence or a failure, the one line that says
where or why."""

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from regcli.config import TrainConfig


class Done(StrEnum):
    """How a requested run ended."""

    reused = "reused"
    trained = "trained"
    resumed = "resumed"
    diverged = "diverged"
    failed = "failed"


@dataclass
class Outcome:
    model_dir: Path
    config: TrainConfig
    action: Done
    history: list[dict] = field(default_factory=list)
    diverged: dict | None = None
    error: str | None = None  # why it failed (Done.failed)
    code: int = 1  # the exit code that error calls for

    def record(self) -> dict:
        """As `--json` shows it."""
        return {
            "model": str(self.model_dir),
            "action": self.action,
            "config": self.config.as_dict(),
            "final": self.history[-1] if self.history else None,
            "diverged": self.diverged,
            **({"error": self.error} if self.error else {}),
        }

    def failure(self) -> str | None:
        """One line saying why the run failed (None if it did not)."""
        return f"{self.model_dir}: {self.error}" if self.error else None

    def divergence(self) -> str | None:
        """One line saying where the run diverged (None if it did not)."""
        d = self.diverged
        if not d:
            return None
        loss = d["loss"] if isinstance(d["loss"], str) else f"{d['loss']:.4g}"
        which = "test loss" if d.get("during") == "test" else "loss"
        return (
            f"{self.model_dir}: training diverged in epoch {d['epoch']} at batch {d['batch']} "
            f"({which} {loss}); try a smaller --lr, --l1 or --weight-decay"
        )
