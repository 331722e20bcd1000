"""Every training hyperparameter in one frozen dataclass, with its unit; every choice, defined once.

The same object flows from the CLI (or a TOML file) through the trainer into every artifact (as
plain data via `as_dict`), so a checkpoint always says exactly how it was made, and two runs are
"the same configuration" exactly when their configs are equal (see `differences`).
"""

import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import get_args

from regcli.core.errors import RegcliError, UsageError
from regcli.core.text import brief

MNIST_MEAN = 0.1307  # mean pixel value of the MNIST training images, on a 0..1 scale
MNIST_STD = 0.3081  # standard deviation of the same pixels
NUM_CLASSES = 10
SIDE = 28  # MNIST images are SIDE x SIDE pixels
UNIT = 1 / 255  # uint8 pixel -> [0, 1]


class Device(StrEnum):
    auto = "auto"  # cuda, then mps, then cpu
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Backend(StrEnum):
    torch = "torch"
    onnx = "onnx"


class Schedule(StrEnum):
    onecycle = "onecycle"
    step = "step"


class RegScope(StrEnum):
    weights = "weights"  # conv/linear weights only
    all = "all"  # every parameter, BatchNorm and biases included


class Grid(StrEnum):
    paths = "paths"  # the L1 path (weight decay 0) and the L2 path (l1 0)
    product = "product"  # every (l1, weight decay) combination


GRID_DEFAULTS = {  # `regcli sweep`'s grid: log-spaced, none included, up to where accuracy falls
    "l1": "0,1e-6,3e-6,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3",
    "weight_decay": "0,1e-5,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2,3e-2",
    "grid": Grid.paths.value,
    "seeds": 5,  # seeds 0..4 per cell
    "train_sizes": None,  # one path on every training image; e.g. 500,1000,5000: one per size
}


class ShiftKind(StrEnum):
    """A shifted test set (shifts.py says exactly how each is made)."""

    none = "none"  # the test set as it is
    rotate = "rotate"  # degrees counter-clockwise
    noise = "noise"  # standard deviation of Gaussian noise, pixels on a 0..1 scale
    blur = "blur"  # standard deviation of a Gaussian blur, in pixels
    erase = "erase"  # side of the erased square, in pixels


class Penalty(StrEnum):
    """Which of a cell's strengths are non-zero: the path it lies on (in the table's order)."""

    NONE = "none"
    L1 = "l1"
    L2 = "l2"
    BOTH = "both"

    @classmethod
    def of(cls, l1: float, weight_decay: float) -> "Penalty":
        return list(cls)[(l1 > 0) + 2 * (weight_decay > 0)]


class Existing(StrEnum):
    """What a job does with a folder that already holds a run."""

    fail = "fail"  # refuse (a named run needs an empty folder)
    force = "force"  # replace it (an interrupted run is abandoned)
    resume = "resume"  # continue its interrupted run (same settings)
    reuse = "reuse"  # keep an identical finished run, continue an identical interrupted one


TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000  # the MNIST splits
RAREST_DIGIT_IMAGES = 5_421  # images of a 5, the rarest digit in MNIST's training set
MODES = ("none", "l1", "l2", "l1_l2")  # which strengths are non-zero; the default model names
MAX_SEED = 2**63 - 1  # torch.manual_seed's largest accepted seed
# The largest accepted L1 strength, weight decay and learning rate. Far past anything useful
# (an L1 strength of 1 already leaves the data no say), and small enough that their products
# with each other and with any weight a run can reach before it diverges stay finite in float32
# (whose largest value is 3.4e38): a strength of 1e39 would be infinite before any work.
MAX_STRENGTH = 1e3  # unitless, for --l1 and --weight-decay
MAX_LR = 1e6  # learning rate (unitless)
# Fields that the members of one grouped training run must share (they step together over the
# same number of batches, through one network shape); everything else may differ per member.
GROUP_FIELDS = (
    "epochs",
    "batch_size",
    "dropout",
    "max_rotation",
    "limit_train",
    "limit_test",
    "train_size",
    "val_size",
    "min_steps",
    "prune_steps",
)
PRUNE_FIELDS = ("pruned_from", "sparsity", "prune_steps")  # set by `regcli prune`, not train
MAX_PRUNE_STEPS = 20  # --iterative: prune-then-retrain steps
MAX_RETRAIN_EPOCHS = 100  # --retrain: epochs per prune-then-retrain step
RETRAIN_LR = 0.01  # peak learning rate of a retraining step: a tenth of training's 0.1
MAX_MIN_STEPS = 1_000_000  # --min-steps: far past any useful run (the committed path takes 7,035)


def setting(default, help: str):
    """A TrainConfig field with its meaning and unit (shown by --help and in --print-config)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    l1: float = setting(0.0, "L1 strength: adds l1 * sum(|w|) to the mean cross-entropy (0..1000)")
    weight_decay: float = setting(
        0.0, "L2 strength: SGD's coupled weight decay (unitless, 0..1000)"
    )
    reg_scope: str = setting("weights", "weights: conv/linear weights only; all: every parameter")
    epochs: int = setting(15, "epochs: one pass over the training set each (more: --min-steps)")
    batch_size: int = setting(128, "images per optimizer step")
    lr: float = setting(0.1, "peak learning rate of one-cycle (the start lr for step; at most 1e6)")
    momentum: float = setting(
        0.9, "SGD momentum; one-cycle cycles it +-0.05 (0.95 -> 0.85 -> 0.95)"
    )
    schedule: str = setting("onecycle", "onecycle, or step (lr x0.1 after each third of the run)")
    max_rotation: float = setting(7.0, "degrees; training images rotate uniformly within +-this")
    dropout: float = setting(0.05, "probability of dropping a unit after each conv block")
    seed: int = setting(1, "seeds weights, data order, rotation angles and dropout")
    limit_train: int | None = setting(None, "train on the first N images only (default: 60,000)")
    limit_test: int | None = setting(None, "test on the first N images only (default: 10,000)")
    train_size: int | None = setting(
        None, "train on N images, class-balanced, drawn by the seed (default: all of them)"
    )
    val_size: int = setting(
        0, "hold out N training images, class-balanced, to measure validation accuracy"
    )
    min_steps: int = setting(
        0, "optimizer steps at least: an epoch becomes the fewest whole passes that reach it"
    )
    # a pruned run (`regcli prune --retrain`): the weights start from another run's model.pt
    pruned_from: str | None = setting(None, "sha256 of the model.pt a pruned run starts from")
    sparsity: float = setting(0.0, "share of conv weights held at exactly zero (0 <= s < 1)")
    prune_steps: int = setting(1, "prune-then-retrain steps that reach the sparsity (1..20)")

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, f.type, value))
        if self.train_size is not None and self.train_size == self.pool_images - self.val_size:
            object.__setattr__(self, "train_size", None)  # all of them: one config, one name
        checks = [
            (
                0 <= self.l1 <= MAX_STRENGTH,
                f"--l1 must be in [0, {MAX_STRENGTH:g}], got {self.l1:g}",
            ),
            (
                0 <= self.weight_decay <= MAX_STRENGTH,
                f"--weight-decay must be in [0, {MAX_STRENGTH:g}], got {self.weight_decay:g}",
            ),
            (self.epochs <= 10_000, f"--epochs must be <= 10000, got {self.epochs}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (
                1 <= self.batch_size <= 60_000,
                f"--batch-size must be in 1..60000, got {self.batch_size}",
            ),
            (0 < self.lr <= MAX_LR, f"--lr must be in (0, {MAX_LR:g}], got {self.lr:g}"),
            (
                0 <= self.momentum < self.max_momentum,
                f"--momentum must be in [0, {self.max_momentum}) for the {self.schedule} "
                f"schedule, got {self.momentum}",
            ),
            (0 <= self.max_rotation <= 180, "--max-rotation must be in [0, 180] degrees"),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.seed <= MAX_SEED, f"--seed must be in 0..{MAX_SEED}, got {self.seed}"),
            (self.limit_train is None or self.limit_train >= 1, "--limit-train must be >= 1"),
            (self.limit_test is None or self.limit_test >= 1, "--limit-test must be >= 1"),
            (self.train_size is None or self.train_size >= 1, "--train-size must be >= 1"),
            (
                self.train_size is None or self.limit_train is None,
                "--train-size (N class-balanced images) and --limit-train (the first N images) "
                "are two ways to choose the training images; give one",
            ),
            (
                0 <= self.val_size < self.pool_images,
                f"--val-size must be in 0..{self.pool_images - 1} (it must leave training "
                f"images), got {self.val_size}",
            ),
            (
                self.train_size is None or self.balanced_fits,
                f"--train-size {self.train_size} and --val-size {self.val_size} need "
                f"{self.per_class(self.train_size or 0) + self.per_class(self.val_size)} images of "
                f"each digit, and MNIST's training set has {RAREST_DIGIT_IMAGES} of its rarest "
                f"(5); at most {self.largest_balanced:,} images can be class-balanced beside "
                f"this validation split (or give all {self.pool_images - self.val_size:,})",
            ),
            (
                0 <= self.min_steps <= MAX_MIN_STEPS,
                f"--min-steps must be in 0..{MAX_MIN_STEPS:,}, got {self.min_steps}",
            ),
            *self.pruning_checks(),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def pruning_checks(self) -> list[tuple[bool, str]]:
        source, steps = self.pruned_from, self.prune_steps
        return [
            (0 <= self.sparsity < 1, f"--sparsity must be in [0, 1), got {self.sparsity:g}"),
            (1 <= steps <= MAX_PRUNE_STEPS, f"--iterative must be in 1..{MAX_PRUNE_STEPS}"),
            (self.epochs % steps == 0, f"epochs {self.epochs} must be a multiple of {steps} steps"),
            (
                source is None or (len(source) == 64 and set(source) <= set("0123456789abcdef")),
                f"pruned_from must be a model.pt's sha256 (64 hex digits), got {source!r:.80}",
            ),
            (
                source is not None or (self.sparsity == 0 and steps == 1),
                "sparsity and prune_steps describe a pruned run: regcli prune sets them",
            ),
        ]

    @staticmethod
    def per_class(images: int) -> int:
        """Images of the best-served digit when `images` are split evenly over the ten."""
        return -(-images // NUM_CLASSES)

    @property
    def balanced_fits(self) -> bool:
        """Whether the class-balanced subset and validation split fit in MNIST's training set
        (checked again against the labels of a --limit-train pool when the data is read)."""
        need = self.per_class(self.train_size or 0) + self.per_class(self.val_size)
        return self.limit_train is not None or need <= RAREST_DIGIT_IMAGES

    @property
    def largest_balanced(self) -> int:
        return NUM_CLASSES * (RAREST_DIGIT_IMAGES - self.per_class(self.val_size))

    @property
    def pool_images(self) -> int:
        """The training images to draw from: the first --limit-train of them, or all."""
        return min(self.limit_train or TRAIN_IMAGES, TRAIN_IMAGES)

    @property
    def train_images(self) -> int:
        """Images per pass: --train-size, else the pool less the validation images."""
        return self.train_size or self.pool_images - self.val_size

    @property
    def passes_per_epoch(self) -> int:
        """The fair-length rule: an epoch is the fewest whole passes over the training images
        that make `epochs` epochs take at least `min_steps` optimizer steps (1 without it)."""
        steps = self.epochs * math.ceil(self.train_images / self.batch_size)
        return max(1, math.ceil(self.min_steps / steps))

    @property
    def steps_per_epoch(self) -> int:
        return self.passes_per_epoch * math.ceil(self.train_images / self.batch_size)

    @property
    def length_text(self) -> str:
        """The rule's outcome, as `--dry-run` and `--print-config` say it."""
        per_pass = math.ceil(self.train_images / self.batch_size)
        passes = self.passes_per_epoch
        return (
            f"{self.train_images:,} images, {per_pass:,} steps a pass, "
            f"{passes} pass{'es' if passes > 1 else ''} an epoch, {self.epochs} epochs = "
            f"{self.epochs * self.steps_per_epoch:,} steps"
            + (f" (--min-steps {self.min_steps:,})" if self.min_steps else "")
        )

    @property
    def test_images(self) -> int:
        return min(self.limit_test or TEST_IMAGES, TEST_IMAGES)

    @property
    def max_momentum(self) -> float:
        """One-cycle goes up to momentum + 0.05, which must stay below 1."""
        return 0.95 if self.schedule == "onecycle" else 1.0

    @property
    def mode(self) -> str:
        """`none`, `l1`, `l2` or `l1_l2`, from which of the two strengths is non-zero."""
        return MODES[(self.l1 > 0) + 2 * (self.weight_decay > 0)]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        """Rebuild from `as_dict` output, ignoring keys a newer version may have added."""
        if not isinstance(data, dict):
            raise UsageError(f"{source}: a config must be a table of settings")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


MAX_JOBS = 64  # processes side by side on a CPU: more than any laptop's cores
MAX_THREADS = 64  # threads per model on a CPU


@dataclass(frozen=True)
class RunOptions:
    """Where and how a job runs (the science is TrainConfig's): one object, from the CLI to the
    runner, so a new run setting is one field here and one option in regcli/cli/options.py."""

    device: str = "auto"  # a Device: where to train
    group_size: int | None = None  # models per grouped network; None: all that fit, 1 on a CPU
    jobs: int | None = None  # CPU: processes training side by side; None: one per core
    threads: int | None = None  # CPU: threads per model (per process); None: 1 (make bench)
    deterministic: bool = True  # cuDNN's deterministic kernels on a GPU (bit-for-bit resume)
    models_dir: Path = Path("models")  # model folders live in <models_dir>/<name>/
    images_dir: Path | None = Path("figures")  # history figures; None: none (a sweep's models)
    data_dir: Path | None = None  # the MNIST files (None: $REGCLI_DATA_DIR, else ./data)
    existing: Existing = Existing.fail  # what to do with a folder that holds a run
    versioned: bool = False  # no --name given: the next free <name>-1, -2, ... if it is taken
    command: tuple[str, ...] = ()  # the command line, for each run's record

    @property
    def purpose(self) -> str:
        """What a lock file says its holder is doing ("regcli train", "regcli sweep")."""
        return " ".join(self.command[:2]) or "regcli"


CHOICES = {"reg_scope": RegScope, "schedule": Schedule}
FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}


def _coerce(name: str, kind, value):
    """Check one field's type (config files and checkpoints are plain data) and normalise it."""
    option = f"--{name.replace('_', '-')}"
    if name in CHOICES:
        try:
            return CHOICES[name](value).value  # a plain str: checkpoints hold plain data only
        except ValueError:
            allowed = ", ".join(CHOICES[name])
            raise UsageError(f"{option} must be one of {allowed}, got {brief(value)}") from None
    optional = type(None) in get_args(kind)
    if value is None and optional:
        return None
    if kind in (str, str | None):
        if not isinstance(value, str):
            raise UsageError(f"{option} must be a string, got {brief(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{option} must be a number, got {brief(value)}")
    if int in (kind, *get_args(kind)):
        if isinstance(value, float) and not value.is_integer():
            raise UsageError(f"{option} must be a whole number, got {brief(value)}")
        return int(value)
    if not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value}")
    return float(value)


def differences(saved: TrainConfig, asked: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """The fields in which two configs differ, as 'field saved (asked other)' phrases."""
    return [
        f"{name} {getattr(saved, name)!r} (asked {getattr(asked, name)!r})"
        for name in FIELD_NAMES
        if name not in ignore and getattr(saved, name) != getattr(asked, name)
    ]


def check_same_settings(
    members: list[tuple[str, TrainConfig]], what: str, ignore: tuple[str, ...] = ("seed",)
) -> None:
    """Refuse to average runs of different settings: `what` mixes configurations. Each member is
    (its name, its config); the seed differs by design."""
    (first_name, first), *others = members
    for name, config in others:
        changes = differences(first, config, ignore=ignore)
        if changes:
            shown = ", ".join(c.replace("(asked", "(vs") for c in changes)
            raise RegcliError(
                f"{what} mixes configurations: {name} differs from {first_name} in {shown}; "
                "retrain it with the others' settings or move it out"
            )


def group_key(config: TrainConfig) -> tuple:
    """Configs with the same key can train together as one grouped network."""
    return tuple(getattr(config, name) for name in GROUP_FIELDS)
