"""A training group's epochs: what an epoch left on the device, each member's record of it,
where a member diverged, and the warnings a run prints once.

Kept apart from the training loop (train.py), which it reads through a few attributes of the
trainer: its members' configs, its test and validation labels, and its step counters.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from regcli.inference.scoring import score_logits
from regcli.store.records import EpochRecord

# A mean cross-entropy above this means the logits have blown up: a 10-class model that guesses
# scores 2.3, and nothing that learns ever gets near 1,000. (The L1 penalty is not counted: a
# strong but finite penalty is a choice, not a divergence; see `penalty_dominates`.)
DIVERGED_LOSS = 1_000.0  # nats per image (mean cross-entropy)
PENALTY_DOMINATES = 10.0  # ratio penalty / data term; above it the data has almost no say


def penalty_dominates(record: EpochRecord) -> bool:
    return record.penalty > PENALTY_DOMINATES * max(record.train_loss, 1e-12)


@dataclass
class EpochResults:
    """What one epoch left on the device, read back to the host."""

    sums: np.ndarray  # [K, 3]: data loss x batch, penalty x batch, correct, over the epoch
    logits: np.ndarray  # [N, K, 10]: every member's test logits after the epoch
    val_logits: np.ndarray | None  # [v, K, 10]: on each member's validation images, if any
    fit_logits: np.ndarray | None  # [n, K, 10]: on each member's training subset, if measured
    lrs: list[float]  # each member's learning rate at the epoch's end
    alive: list[bool]  # False: the member's loss went bad in this epoch (or before)
    diverged_step: list[int]  # the step (counted from the run's start) it went bad at
    diverged_loss: list[float]  # its loss (data + penalty) at that step
    seconds: float  # wall time of the epoch, test pass included

    @classmethod
    def read(cls, trainer, sums, started: float) -> "EpochResults":
        return cls(
            sums=sums,
            logits=trainer.test_logits(),
            val_logits=trainer.val_logits(),
            fit_logits=trainer.fit_logits(),
            lrs=trainer.lr_table[trainer.step_count.item()].tolist(),
            alive=trainer.alive.tolist(),
            diverged_step=trainer.diverged_step.tolist(),
            diverged_loss=trainer.diverged_loss.tolist(),
            seconds=time.perf_counter() - started,
        )


class Progress:
    """Each member's history, where it diverged (if it has), and whether it was warned."""

    def __init__(self, trainer, resume: list | None):
        k = trainer.members
        self.trainer = trainer
        self.histories = [list(m.history) for m in resume] if resume else [[] for _ in range(k)]
        self.diverged = [m.diverged for m in resume] if resume else [None] * k
        self.warned: set[int] = set()

    def judge(self, epoch: int, results: EpochResults) -> list[EpochRecord | None]:
        """Each member's record of the epoch, added to its history; None once it has diverged."""
        records = []
        for i, history in enumerate(self.histories):
            record = None
            if not self.diverged[i]:
                record, self.diverged[i] = member_record(self.trainer, i, epoch, results)
            if record:
                history.append(record)
            records.append(record)
        return records

    def penalty_warnings(self, records: list[EpochRecord | None]) -> list[str]:
        """A warning for each member whose L1 penalty dwarfs its data term (once a run)."""
        notes = []
        for i, record in enumerate(records):
            if record and penalty_dominates(record) and i not in self.warned:
                self.warned.add(i)
                notes.append(
                    f"{'' if len(records) == 1 else f'member {i + 1}: '}the L1 penalty "
                    f"({record.penalty:.3g}) dwarfs the data term ({record.train_loss:.3g}): "
                    f"--l1 {self.trainer.configs[i].l1:g} leaves the data almost no say; "
                    "try a smaller --l1"
                )
        return notes

    def states(self) -> list:
        return self.trainer.member_states(self.histories, self.diverged)


def member_record(
    trainer, i: int, epoch: int, results: EpochResults
) -> tuple[EpochRecord | None, dict | None]:
    """Member i's record of the epoch, or where it diverged instead: in training (its loss went
    bad at some step) or in the test pass (a finite training loss, blown-up predictions)."""
    if not results.alive[i]:
        batch = results.diverged_step[i] - (epoch - 1) * trainer.steps_per_epoch + 1
        return None, divergence(epoch, batch, results.diverged_loss[i], "training")
    data_loss, penalty, correct = results.sums[i] / trainer.seen
    test = score_logits(results.logits[:, i], trainer.test.labels)
    val = fit = None
    if results.val_logits is not None:
        val = score_logits(results.val_logits[:, i], trainer.val_labels[i])
    if results.fit_logits is not None:
        fit = score_logits(results.fit_logits[:, i], trainer.train_labels[i])
    for during, score in (("test", test), ("validation", val), ("clean training", fit)):
        if score is not None and not score.loss <= DIVERGED_LOSS:
            trainer.alive[i] = False
            return None, divergence(epoch, trainer.steps_per_epoch, score.loss, during)
    record = EpochRecord(
        epoch=epoch,
        train_loss=float(data_loss),
        penalty=float(penalty),
        train_accuracy=float(correct),
        test_loss=test.loss,
        test_accuracy=test.accuracy,
        lr=results.lrs[i],
        seconds=results.seconds,
        val_loss=val and val.loss,
        val_accuracy=val and val.accuracy,
        clean_train_accuracy=fit and fit.accuracy,
    )
    return record, None


def divergence(epoch: int, batch: int, loss: float, during: str) -> dict:
    """Where a member stopped (MemberState.diverged): a non-finite loss is kept as its text."""
    shown = loss if math.isfinite(loss) else str(loss)
    return {"epoch": epoch, "batch": batch, "loss": shown, "during": during}


def run_info(trainer, deterministic: bool) -> dict:
    """How the group was trained."""
    return {
        "group_size": trainer.members,
        "cuda_graphs": trainer.graphs and bool(trainer.captured),
        "deterministic": deterministic if trainer.device.type == "cuda" else True,
    }
