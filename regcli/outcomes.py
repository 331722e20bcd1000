"""What a job says of each run it was asked for: reused, trained, resumed or diverged, with its
final record (`--json`) and, for a divergence, the one line that says where."""

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


@dataclass
class Outcome:
    model_dir: Path
    config: TrainConfig
    action: Done
    history: list[dict] = field(default_factory=list)
    diverged: dict | None = None

    def record(self) -> dict:
        """As `--json` shows it."""
        return {
            "model": str(self.model_dir),
            "action": self.action,
            "config": self.config.as_dict(),
            "final": self.history[-1] if self.history else None,
            "diverged": self.diverged,
        }

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
