"""One trainer for every regularization mode: the mode is only which strengths are non-zero.

The whole training set lives on the training device as one uint8 tensor; each step indexes a
batch, rotates it with a gather (see augment.py) and runs the model. Nothing in an epoch waits
for the device: losses and counts accumulate in device tensors and are read once per epoch.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from regcli.augment import RandomRotation
from regcli.config import TrainConfig
from regcli.data import Split
from regcli.errors import Diverged, Interrupted, RegcliError, UsageError
from regcli.scoring import score
from regcli.model import Net, torch_predictor
from regcli.regularization import l1_penalty, parameter_groups

DEVICES = ("auto", "cpu", "cuda", "mps")
# A mean cross-entropy (plus penalty) above this means the logits or the penalty have blown up:
# a 10-class model that guesses scores 2.3, and nothing that learns ever gets near 1,000.
DIVERGED_LOSS = 1_000.0
DIVERGENCE_CHECK_STEPS = 50  # steps between two looks at the loss (each is a host sync)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy on the augmented training batches (the data term)
    penalty: float  # mean L1 penalty term added to the loss (0 without L1)
    train_accuracy: float  # fraction 0..1, on the augmented batches, in training mode
    test_loss: float  # mean cross-entropy over the test images
    test_accuracy: float  # fraction 0..1
    lr: float  # learning rate at the end of the epoch
    seconds: float  # wall time of the epoch, test pass included

    def as_dict(self) -> dict:
        return asdict(self)


class Reporter(Protocol):
    """What the trainer tells whoever is watching; the CLI draws a progress bar from it."""

    def epoch_started(self, epoch: int, steps: int) -> None: ...
    def step_done(self) -> None: ...
    def epoch_finished(self, record: EpochRecord, epochs: int) -> None: ...


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit choice must be available."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available[name]:
        raise RegcliError(f"device {name!r} was asked for but is not available here")
    return torch.device(name)


def build_schedule(optimizer, config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    # step: x0.1 after each third of the run, stepped per batch like one-cycle
    third = max(1, config.epochs * steps_per_epoch // 3)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=third, gamma=0.1)


@dataclass
class Run:
    """Everything one training run owns; an epoch of it is `train_epoch(run)`."""

    config: TrainConfig
    device: torch.device
    model: Net
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    rotate: RandomRotation
    generator: torch.Generator  # shuffling order and rotation angles
    train_data: Split  # torch tensors on `device`
    test_data: Split  # numpy, scored in batches after each epoch

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_data) // self.config.batch_size)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this run is (plain tensors and numbers)."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "generator": self.generator.get_state(),
            "cpu_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["cpu_rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


def start_run(config: TrainConfig, train_split: Split, test_split: Split, device) -> Run:
    """A fresh, seeded Net with its optimizer and schedule, the data already on `device`."""
    device = torch.device(device)
    torch.manual_seed(config.seed)  # weights and dropout
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True  # same seed, same device: same metrics
        torch.backends.cudnn.benchmark = False
    model = Net(config.dropout).to(device)
    optimizer = torch.optim.SGD(
        parameter_groups(model, config.weight_decay, config.reg_scope),
        lr=config.lr,
        momentum=config.momentum,
    )
    train_data = on_device(train_split.head(config.limit_train), device)
    steps = -(-len(train_data) // config.batch_size)
    return Run(
        config=config,
        device=device,
        model=model,
        optimizer=optimizer,
        schedule=build_schedule(optimizer, config, steps),
        rotate=RandomRotation(config.max_rotation, device),
        generator=torch.Generator(device=device).manual_seed(config.seed),
        train_data=train_data,
        test_data=test_split.head(config.limit_test),
    )


def on_device(split: Split, device: torch.device) -> Split:
    """The split's arrays as torch tensors on `device`, where the trainer indexes them."""
    return Split(
        torch.from_numpy(split.images).to(device), torch.from_numpy(split.labels).to(device)
    )


class StopFlag:
    """Set (by a signal handler) to ask the trainer to stop at the next batch boundary."""

    signal_number: int | None = None


def train(
    config: TrainConfig,
    train_split: Split,
    test_split: Split,
    device: torch.device,
    reporter: Reporter | None = None,
    resume: dict | None = None,
    on_epoch: Callable[[Run, list[EpochRecord]], None] | None = None,
    stop: StopFlag | None = None,
) -> tuple[Net, list[EpochRecord]]:
    """Train a Net under `config`; return it with one record per epoch.

    `resume` is what `on_epoch` was given to save ({"run": run.state_dict(), "history": ...});
    training continues after its last epoch, bit for bit as if it had never stopped (same device).
    """
    run = start_run(config, train_split, test_split, device)
    history = []
    if resume is not None:
        run.load_state_dict(resume["run"])
        history = [EpochRecord(**r) for r in resume["history"]]
    for epoch in range(len(history) + 1, config.epochs + 1):
        started = time.perf_counter()
        if reporter:
            reporter.epoch_started(epoch, run.steps_per_epoch)
        data_loss, penalty, correct = train_epoch(run, epoch, reporter, stop).tolist()
        test = score(torch_predictor(run.model), run.test_data)
        seen = len(run.train_data)
        record = EpochRecord(
            epoch=epoch,
            train_loss=data_loss / seen,
            penalty=penalty / seen,
            train_accuracy=correct / seen,
            test_loss=test.loss,
            test_accuracy=test.accuracy,
            lr=run.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - started,
        )
        history.append(record)
        if on_epoch:
            on_epoch(run, history)
        if reporter:
            reporter.epoch_finished(record, config.epochs)
    return run.model, history


def train_epoch(
    run: Run, epoch: int = 1, reporter: Reporter | None = None, stop: StopFlag | None = None
) -> torch.Tensor:
    """One pass in random order; returns the sums of (data loss, penalty, correct) on the CPU.

    Per-step statistics stay on the device and are read only every DIVERGENCE_CHECK_STEPS steps
    and at the end of the epoch, to catch a diverging loss without a host sync per step.
    """
    model, data, config = run.model, run.train_data, run.config
    model.train()
    order = torch.randperm(len(data), generator=run.generator, device=run.device)
    batches = order.split(config.batch_size)
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float64)
    steps = torch.zeros(len(batches), 3, dtype=torch.float64, device=run.device)
    for step, batch in enumerate(batches):
        if stop is not None and stop.signal_number is not None:
            message = f"stopped in epoch {epoch} at batch {step + 1}/{len(batches)}"
            raise Interrupted(message, stop.signal_number)
        images = run.rotate(data.images[batch], run.generator)
        labels = data.labels[batch]
        logits = model(images)
        data_loss = F.cross_entropy(logits, labels)
        penalty = l1_penalty(model, config.l1, config.reg_scope)
        run.optimizer.zero_grad(set_to_none=True)
        (data_loss + penalty).backward()
        run.optimizer.step()
        run.schedule.step()
        with torch.no_grad():
            correct = (logits.argmax(1) == labels).sum()
            steps[step] = torch.stack([data_loss.detach(), penalty.detach(), correct])
        if reporter:
            reporter.step_done()
        if (step + 1) % DIVERGENCE_CHECK_STEPS == 0:
            check_divergence(steps[: step + 1].cpu(), epoch)
    steps = steps.cpu()
    check_divergence(steps, epoch)
    return torch.stack(
        [(steps[:, 0] * sizes).sum(), (steps[:, 1] * sizes).sum(), steps[:, 2].sum()]
    )


def check_divergence(steps: torch.Tensor, epoch: int) -> None:
    """Raise Diverged naming the first step whose loss (data + penalty) is out of bounds."""
    total = steps[:, 0] + steps[:, 1]
    bad = ~torch.isfinite(total) | (total > DIVERGED_LOSS)
    if bad.any():
        step = int(bad.nonzero()[0])
        raise Diverged(
            f"training diverged in epoch {epoch} at batch {step + 1}: loss {float(total[step]):.4g}"
            "; try a smaller --lr, --l1 or --weight-decay"
        )
