"""Every training hyperparameter in one frozen dataclass, with its unit.

The same object flows from the CLI through the trainer into every artifact (as plain data via
`as_dict`), so a checkpoint always says exactly how it was made.
"""

from dataclasses import asdict, dataclass, fields

from regcli.errors import UsageError

MNIST_MEAN = 0.1307  # mean pixel value of the MNIST training images, on a 0..1 scale
MNIST_STD = 0.3081  # standard deviation of the same pixels
NUM_CLASSES = 10

REG_SCOPES = ("weights", "all")
SCHEDULES = ("onecycle", "step")


@dataclass(frozen=True)
class TrainConfig:
    l1: float = 0.0  # strength of the L1 penalty added to the loss: l1 * sum(|w|)
    weight_decay: float = 0.0  # coupled L2 strength, SGD's weight_decay
    reg_scope: str = "weights"  # "weights": conv/linear weights only; "all": every parameter
    epochs: int = 15  # passes over the training set
    batch_size: int = 128  # images per optimizer step
    lr: float = 0.1  # peak learning rate of the one-cycle schedule (start lr for "step")
    momentum: float = 0.9  # SGD momentum
    schedule: str = "onecycle"  # "onecycle" or "step" (x0.1 every third of the run)
    max_rotation: float = 7.0  # degrees; training images rotate uniformly in +-max_rotation
    dropout: float = 0.05  # probability, after every conv block but the last
    seed: int = 1  # seeds weights, shuffling, augmentation and dropout
    limit_train: int | None = None  # use only the first N training images (None: all 60,000)
    limit_test: int | None = None  # use only the first N test images (None: all 10,000)

    def __post_init__(self):
        checks = [
            (self.l1 >= 0, f"--l1 must be >= 0, got {self.l1}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.reg_scope in REG_SCOPES, f"--reg-scope must be one of {REG_SCOPES}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {SCHEDULES}"),
            (0 <= self.max_rotation <= 180, "max_rotation must be in [0, 180] degrees"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.limit_train is None or self.limit_train >= 1, "--limit-train must be >= 1"),
            (self.limit_test is None or self.limit_test >= 1, "--limit-test must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    @property
    def mode(self) -> str:
        """`none`, `l1`, `l2` or `l1_l2`, from which of the two strengths is non-zero."""
        return {(False, False): "none", (True, False): "l1", (False, True): "l2"}.get(
            (self.l1 > 0, self.weight_decay > 0), "l1_l2"
        )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Rebuild from `as_dict` output, ignoring keys a newer version may have added."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
