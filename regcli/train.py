"""One trainer for every regularization mode: the mode is only which strengths are non-zero.

The whole training set lives on the training device as one uint8 tensor; each step indexes a
batch, rotates it with a gather (see augment.py) and runs the model. Nothing in an epoch waits
for the device: losses and counts accumulate in device tensors and are read once per epoch.
"""

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from regcli.artifacts import CHECKPOINT_NAME, ensure_writable, load_metrics, save_run
from regcli.augment import RandomRotation
from regcli.config import TrainConfig
from regcli.data import Split, load_split
from regcli.errors import RegcliError, UsageError
from regcli.evaluate import score, torch_predictor
from regcli.model import Net
from regcli.plots import history_figure, save_figure
from regcli.regularization import l1_penalty, parameter_groups

DEVICES = ("auto", "cpu", "cuda", "mps")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


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
    train_data: Split
    test_data: Split

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_data) // self.config.batch_size)


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
    train_data = train_split.head(config.limit_train).to(device)
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
        test_data=test_split.head(config.limit_test).to(device),
    )


def train(
    config: TrainConfig,
    train_split: Split,
    test_split: Split,
    device: torch.device,
    reporter: Reporter | None = None,
) -> tuple[Net, list[EpochRecord]]:
    """Train a fresh Net under `config`; return it with one record per epoch."""
    run = start_run(config, train_split, test_split, device)
    history = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        if reporter:
            reporter.epoch_started(epoch, run.steps_per_epoch)
        data_loss, penalty, correct = train_epoch(run, reporter).tolist()
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
        if reporter:
            reporter.epoch_finished(record, config.epochs)
    return run.model, history


def train_epoch(run: Run, reporter: Reporter | None = None) -> torch.Tensor:
    """One pass in random order; returns the sums of (data loss, penalty, correct) on the CPU."""
    model, data, config = run.model, run.train_data, run.config
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=run.device)
    order = torch.randperm(len(data), generator=run.generator, device=run.device)
    for batch in order.split(config.batch_size):
        images = run.rotate(data.images[batch], run.generator)
        labels = data.labels[batch]
        logits = model(images)
        data_loss = F.cross_entropy(logits, labels)
        penalty = l1_penalty(model, config.l1, config.reg_scope)
        run.optimizer.zero_grad(set_to_none=True)
        (data_loss + penalty).backward()
        run.optimizer.step()
        run.schedule.step()
        with torch.no_grad():  # accumulate on the device: no host sync inside the epoch
            correct = (logits.argmax(1) == labels).sum()
            step_totals = torch.stack([data_loss.detach(), penalty.detach(), correct / len(batch)])
            totals += step_totals * len(batch)
        if reporter:
            reporter.step_done()
    return totals.cpu()


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def train_and_save(
    config: TrainConfig,
    name: str,
    models_dir: Path,
    images_dir: Path,
    data_dir: Path | None = None,
    device_name: str = "auto",
    reporter: Reporter | None = None,
    force: bool = False,
) -> Path:
    """`regcli train`: train, then write model.pt, metrics and the history plot; returns the dir."""
    model_dir = Path(models_dir) / check_name(name)
    if (model_dir / CHECKPOINT_NAME).exists() and not force:
        raise UsageError(
            f"{model_dir} already holds a trained model; pass --force to replace it "
            "or --name to train another"
        )
    device = resolve_device(device_name)
    train_split, test_split = load_split(data_dir, "train"), load_split(data_dir, "test")
    for folder in (model_dir, Path(images_dir)):
        ensure_writable(folder)  # fail now, not after the whole run
    model, history = train(config, train_split, test_split, device, reporter)
    records = [r.as_dict() for r in history]
    save_run(model_dir, model, config, records, str(device))
    plot_history(model_dir, images_dir)
    return model_dir


def plot_history(model_dir: Path, images_dir: Path) -> Path:
    """images/<name>_history.png from the model's metrics.json."""
    target = Path(images_dir) / f"{model_dir.name}_history.png"
    save_figure(history_figure(model_dir.name, load_metrics(model_dir)["epochs"]), target)
    return target
