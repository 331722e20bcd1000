"""The one trainer: a group of 1..K configs trained as one grouped network, each its own model.

Every member of a group is the model it would be alone, in distribution: its own seed gives its
initial weights, data order and rotation angles; its loss is its own mean cross-entropy; its L1
penalty, weight decay (scope included), momentum and one-cycle schedule are its own; BatchNorm
over K*C channels is per-member BatchNorm. Only the dropout masks come from one generator shared
by the group (seeded from all members' seeds). A single run is a group of one, and with K=1 the
grouped network is exactly `Net`.

A step (`GroupTrainer.step`) is pure tensor work on fixed buffers: gather the batch through this
epoch's order, rotate by gather, forward, backward, and the SGD update of the flat parameter
vector, with the learning rate and momentum read from a precomputed table by a step counter on
the device. On a CPU it runs eagerly. On CUDA it is captured once as a CUDA graph (one for full
batches, one for the last, shorter batch) and replayed: no Python and no host sync inside an
epoch. Each epoch's data order and angles are drawn outside, from per-(seed, epoch) generators,
and dropout is reseeded per epoch, so a resumed run needs no saved random state to continue
bit-identically on the same device.

A member whose loss becomes non-finite or absurd stops: its updates are masked from that step
on, the step is recorded, and the others go on.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from regcli.augment import RandomRotation
from regcli.config import NUM_CLASSES, SIDE, UNIT, TrainConfig, group_key
from regcli.data import Split
from regcli.errors import Interrupted, UsageError, first_line
from regcli.events import Reporter
from regcli.grouped import FlatParameters, derived_seed, initial_state, pack, unpack
from regcli.model import Net
from regcli.records import EpochRecord
from regcli.scoring import EVAL_BATCH, score_logits

# A mean cross-entropy above this means the logits have blown up: a 10-class model that guesses
# scores 2.3, and nothing that learns ever gets near 1,000. (The L1 penalty is not counted: a
# strong but finite penalty is a choice, not a divergence; see `penalty_dominates`.)
DIVERGED_LOSS = 1_000.0
PENALTY_DOMINATES = 10.0  # penalty / data term above this: the data has almost no say
WARMUP_STEPS = 3  # eager steps before CUDA graph capture (cuDNN and cuBLAS set-up)
CUDA_ELEMENTS_LIMIT = 2**30  # activation elements per evaluation chunk (cuDNN wants < 2**31)


@dataclass
class MemberState:
    """What one member needs to continue (saved in its last.pt after every epoch)."""

    weights: dict[str, torch.Tensor]  # an ordinary Net state dict
    momentum: dict[str, torch.Tensor]  # SGD momentum buffers, by parameter name
    history: list[EpochRecord]
    diverged: dict | None  # {"epoch", "batch", "loss"} once the member has stopped


class StopFlag:
    """Set (by a signal handler) to ask the trainer to stop at the next batch boundary."""

    signal_number: int | None = None


def schedule_table(config: TrainConfig, steps_per_epoch: int) -> tuple[list[float], list[float]]:
    """Learning rate and momentum at every step 0..T (T = all steps), read off PyTorch's own
    scheduler so that a grouped member follows exactly the schedule it would follow alone."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=config.lr, momentum=config.momentum)
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            total_steps=total,
            base_momentum=max(0.0, config.momentum - 0.05),
            max_momentum=config.momentum + 0.05,
        )
    else:  # step: x0.1 after each third of the run, stepped per batch like one-cycle
        third = max(1, total // 3)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=third, gamma=0.1)
    lrs, momenta = [], []
    for _ in range(total + 1):
        group = optimizer.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["momentum"])
        if len(lrs) <= total:
            optimizer.step()
            schedule.step()
    return lrs, momenta


class GroupTrainer:
    """K configs as one grouped network on one device: fixed buffers, one step function."""

    def __init__(
        self,
        configs: list[TrainConfig],
        train_split: Split,
        test_split: Split,
        device: torch.device,
        *,
        resume: list[MemberState] | None = None,
        deterministic: bool = True,
        graphs: bool | None = None,
    ):
        if len({group_key(c) for c in configs}) != 1:
            raise UsageError(
                "the members of one training group must share epochs, batch size, "
                "dropout, rotation and data limits"
            )
        self.configs, self.device = configs, torch.device(device)
        self.members = k = len(configs)
        first = configs[0]
        self.epochs, self.batch_size = first.epochs, first.batch_size
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = deterministic
            torch.backends.cudnn.benchmark = not deterministic
        self.graphs = self.device.type == "cuda" if graphs is None else graphs

        train = train_split.head(first.limit_train)
        self.images = torch.from_numpy(np.ascontiguousarray(train.images)).to(self.device)
        self.labels = torch.from_numpy(np.ascontiguousarray(train.labels)).to(self.device)
        self.test = test_split.head(first.limit_test)
        self.test_images = torch.from_numpy(np.ascontiguousarray(self.test.images)).to(self.device)
        self.size = n = len(train)
        self.full_steps, self.tail = divmod(n, self.batch_size)
        self.steps_per_epoch = self.full_steps + (self.tail > 0)

        self.net = Net(first.dropout, members=k).to(self.device)
        states = [m.weights for m in resume] if resume else [initial_state(c) for c in configs]
        self.net.load_state_dict(pack(states))
        self.params = FlatParameters(self.net, configs)
        self.momentum = torch.zeros_like(self.params.vector)
        if resume:
            self.momentum.copy_(self.params.flatten(pack([m.momentum for m in resume])))
        tables = [schedule_table(c, self.steps_per_epoch) for c in configs]
        self.lr_table = torch.tensor([t[0] for t in tables], device=self.device).T.contiguous()
        self.momentum_table = torch.tensor(
            [t[1] for t in tables], device=self.device
        ).T.contiguous()
        self.rotate = RandomRotation(first.max_rotation, self.device)

        done = len(resume[0].history) if resume else 0
        as_long = {"dtype": torch.long, "device": self.device}
        self.step_count = torch.full((1,), done * self.steps_per_epoch, **as_long)
        self.epoch_step = torch.zeros(1, **as_long)
        self.order = torch.zeros(k, n, **as_long)  # this epoch's data order, per member
        self.angles = torch.zeros(k, n, **as_long)  # this epoch's rotation angle indices
        self.sums = torch.zeros(k, 3, dtype=torch.float64, device=self.device)  # loss, penalty, ok
        self.alive = torch.ones(k, dtype=torch.bool, device=self.device)
        self.diverged_step = torch.full((k,), -1, **as_long)
        self.diverged_loss = torch.zeros(k, device=self.device)
        if resume:
            for i, member in enumerate(resume):
                if member.diverged:
                    self.alive[i] = False
        self.batches = [self.batch_size] * self.full_steps + ([self.tail] if self.tail else [])
        self.positions = {size: torch.arange(size, **as_long) for size in set(self.batches)}
        self.scales = {  # a step's (mean loss, mean penalty, correct count) -> epoch sums
            size: torch.tensor([size, size, 1], dtype=torch.float64, device=self.device)
            for size in self.positions
        }
        self.captured: dict[int, torch.cuda.CUDAGraph] = {}
        self.graph_error: str | None = None  # why capture failed, if it did (then: eager)

    # --- the step --------------------------------------------------------------------------

    def step(self, batch: int) -> None:
        """One optimizer step of every member on its next `batch` images (capturable)."""
        k = self.members
        where = self.positions[batch] + self.epoch_step * self.batch_size
        indices = self.order.index_select(1, where).flatten()  # [K*batch], member-major
        choice = self.angles.index_select(1, where).flatten()
        images = self.rotate.rotate(self.images.index_select(0, indices), choice)
        x = images.view(k, batch, SIDE, SIDE).transpose(0, 1).contiguous()  # [batch, K, 28, 28]
        y = self.labels.index_select(0, indices).view(k, batch).T  # [batch, K]
        logits = self.net(x).view(batch, k, NUM_CLASSES)
        cross_entropy = F.cross_entropy(
            logits.reshape(batch * k, NUM_CLASSES), y.reshape(batch * k), reduction="none"
        )
        data_loss = cross_entropy.view(batch, k).mean(0)  # [K]: each member's own mean
        # each parameter's gradient, laid end to end: the gradient of the flat vector
        grads = torch.autograd.grad(data_loss.sum(), self.params.parameters)
        with torch.no_grad():
            gradient = torch.cat([g.reshape(-1) for g in grads])
            self.update(gradient, data_loss, logits, y, batch)

    def update(self, gradient, data_loss, logits, y, batch: int) -> None:
        """Divergence bookkeeping, then SGD with momentum, per-member lr, L1 and weight decay.

        Few, fused kernels: on a GPU a step is bound by how many kernels it launches.
        """
        p = self.params
        w = p.vector
        penalty = p.member_sums(w.abs() * p.l1)  # [K]
        bad = ~(data_loss <= DIVERGED_LOSS)  # NaN compares false: bad too
        newly = bad & self.alive
        torch.where(newly, self.step_count, self.diverged_step, out=self.diverged_step)
        torch.where(newly, data_loss + penalty, self.diverged_loss, out=self.diverged_loss)
        self.alive.logical_and_(~bad)
        lr = self.lr_table.index_select(0, self.step_count).view(-1)  # [K]
        momentum = self.momentum_table.index_select(0, self.step_count).view(-1)
        owner = p.member_of
        keep = self.alive.index_select(0, owner)
        # torch.optim.SGD: d = g + wd * w; buf = momentum * buf + d; w -= lr * buf
        # (the L1 term's gradient is l1 * sign(w), as autograd gives for l1 * |w|)
        d = torch.addcmul(torch.addcmul(gradient, p.l1, w.sign()), p.weight_decay, w)
        buffer = torch.addcmul(d, momentum.index_select(0, owner), self.momentum)
        step = torch.addcmul(w, lr.index_select(0, owner), buffer, value=-1)
        torch.where(keep, buffer, self.momentum, out=self.momentum)
        torch.where(keep, step, w, out=w)
        correct = (logits.argmax(2) == y).sum(0)
        sums = torch.stack([data_loss, penalty, correct.float()], 1).double()
        self.sums.addcmul_(sums, self.scales[batch])  # loss and penalty x batch, correct x 1
        self.step_count.add_(1)
        self.epoch_step.add_(1)

    # --- CUDA graphs -----------------------------------------------------------------------

    def mutable(self) -> list[torch.Tensor]:
        """Every tensor a step writes, to undo the warm-up steps before capture."""
        buffers = [b for b in self.net.buffers()]
        return [
            self.params.vector,
            self.momentum,
            *buffers,
            self.step_count,
            self.epoch_step,
            self.sums,
            self.alive,
            self.diverged_step,
            self.diverged_loss,
        ]

    def capture(self) -> None:
        """Warm up eagerly on a side stream, then capture one graph per batch size; the warm-up
        steps are undone. If capture fails, training goes on eagerly (and says why)."""
        saved = [t.clone() for t in self.mutable()]
        try:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_STEPS):
                    for batch in self.positions:
                        self.epoch_step.zero_()
                        self.step(batch)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            pool = None
            for batch in sorted(self.positions, reverse=True):
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self.step(batch)
                pool = graph.pool()
                self.captured[batch] = graph
        except Exception as error:  # an op that cannot be captured: correct, only slower
            if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error):
                raise  # the group does not fit: runs.py splits it
            self.captured.clear()
            self.graphs = False
            self.graph_error = first_line(error)
        finally:
            torch.cuda.synchronize(self.device)
            for tensor, value in zip(self.mutable(), saved, strict=True):
                tensor.copy_(value)

    def run_step(self, batch: int) -> None:
        if self.graphs:
            self.captured[batch].replay()
        else:
            self.step(batch)

    # --- epochs ----------------------------------------------------------------------------

    def draw_epoch(self, epoch: int) -> None:
        """This epoch's data order and rotation angles per member, and the dropout seed."""
        orders, angles = [], []
        for config in self.configs:
            generator = torch.Generator().manual_seed(derived_seed(config.seed, epoch, "data"))
            orders.append(torch.randperm(self.size, generator=generator))
            angles.append(torch.randint(len(self.rotate.angles), (self.size,), generator=generator))
        self.order.copy_(torch.stack(orders))
        self.angles.copy_(torch.stack(angles))
        torch.manual_seed(derived_seed([c.seed for c in self.configs], epoch, "dropout"))

    def train_epoch(
        self, epoch: int, reporter: Reporter | None = None, stop: StopFlag | None = None
    ):
        """One pass; returns per-member sums (data loss, penalty, correct) as a numpy [K, 3]."""
        self.net.train()
        if self.graphs and not self.captured:
            self.capture()  # before the epoch's seeds: warm-up draws must not shift them
        self.draw_epoch(epoch)
        self.epoch_step.zero_()
        self.sums.zero_()
        reader = RunningLoss(self)
        if reporter:
            reporter.epoch_started(epoch, reader.read)
        for number, batch in enumerate(self.batches, 1):
            if stop is not None and stop.signal_number is not None:
                message = f"stopped in epoch {epoch} at batch {number}/{len(self.batches)}"
                raise Interrupted(message, stop.signal_number)
            self.run_step(batch)
            reader.stepped(number)
            if reporter:
                reporter.step_done()
        return self.sums.cpu().numpy()

    def test_logits(self) -> np.ndarray:
        """Logits [N, K, 10] of every member on the test images, in eval mode and in chunks."""
        self.net.eval()
        k, n = self.members, len(self.test_images)
        per_image = k * 16 * SIDE * SIDE  # the widest activation, elements per test image
        chunk = max(1, min(EVAL_BATCH, CUDA_ELEMENTS_LIMIT // per_image))
        out = []
        with torch.no_grad():
            for start in range(0, n, chunk):
                pixels = self.test_images[start : start + chunk].float() * UNIT
                x = pixels.unsqueeze(1).expand(-1, k, -1, -1).contiguous()
                out.append(self.net(x).view(-1, k, NUM_CLASSES).cpu())
        return torch.cat(out).numpy()

    def member_states(
        self, histories: list[list[EpochRecord]], diverged: list
    ) -> list[MemberState]:
        """Each member's weights and momentum as ordinary Net-shaped dicts, on the CPU."""
        state = self.net.state_dict()  # the parameters live in the flat vector
        weights = unpack({k: v.cpu() for k, v in state.items()}, self.members)
        momentum = self.params.unflatten(self.momentum)
        momenta = unpack({k: v.cpu() for k, v in momentum.items()}, self.members)
        return [
            MemberState(w, m, list(h), d)
            for w, m, h, d in zip(weights, momenta, histories, diverged, strict=True)
        ]


class RunningLoss:
    """The mean data loss of the epoch so far (over the members still training), for a progress
    bar, without a host sync: on CUDA the sums are copied to pinned memory asynchronously every
    few steps and read once the copy has landed; on a CPU they are simply read."""

    EVERY = 20  # steps between two copies

    def __init__(self, trainer: GroupTrainer):
        self.trainer = trainer
        self.cuda = trainer.device.type == "cuda"
        self.host = torch.zeros(2, dtype=torch.float64, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.value: float | None = None
        self.pending = False

    def totals(self) -> torch.Tensor:
        t = self.trainer
        alive = t.alive.double()
        loss = torch.where(t.alive, t.sums[:, 0], 0.0).sum()
        seen = t.epoch_step.double()[0] * t.batch_size * alive.sum()
        return torch.stack([loss, seen])

    def stepped(self, number: int) -> None:
        if self.cuda and number % self.EVERY == 0 and not self.pending:
            self.host.copy_(self.totals(), non_blocking=True)
            self.event.record()
            self.pending = True

    def read(self) -> float | None:
        if not self.cuda:
            self.host.copy_(self.totals())
        elif not (self.pending and self.event.query()):
            return self.value
        loss, seen = self.host.tolist()
        self.value, self.pending = (loss / seen if seen else None), False
        return self.value


def penalty_dominates(record: EpochRecord) -> bool:
    return record.penalty > PENALTY_DOMINATES * max(record.train_loss, 1e-12)


def train_group(
    configs: list[TrainConfig],
    train_split: Split,
    test_split: Split,
    device: torch.device,
    *,
    reporter: Reporter | None = None,
    resume: list[MemberState] | None = None,
    on_epoch: Callable[[list[MemberState]], None] | None = None,
    stop: StopFlag | None = None,
    deterministic: bool = True,
    graphs: bool | None = None,
    label: str = "",
) -> tuple[list[MemberState], dict]:
    """Train every config to its last epoch (or until every member has diverged).

    `resume` is what `on_epoch` was given after the last completed epoch; training continues
    from there. Returns each member's final state and history (diverged members: up to their
    last good epoch, with `diverged` saying where), and how the group was trained.
    """
    trainer = GroupTrainer(
        configs,
        train_split,
        test_split,
        device,
        resume=resume,
        deterministic=deterministic,
        graphs=graphs,
    )
    k = len(configs)
    histories = [list(m.history) for m in resume] if resume else [[] for _ in configs]
    diverged = [m.diverged for m in resume] if resume else [None] * k
    done = len(histories[0])
    warned = set()  # members whose penalty was reported as dominating
    if reporter:
        reporter.run_started(label, k, trainer.epochs, trainer.steps_per_epoch, done + 1)
    for epoch in range(done + 1, trainer.epochs + 1):
        if all(diverged):
            break
        started = time.perf_counter()
        sums = trainer.train_epoch(epoch, reporter, stop)
        if reporter:
            reporter.testing()
        logits = trainer.test_logits()
        lrs = trainer.lr_table[trainer.step_count.item()].tolist()
        alive = trainer.alive.tolist()
        steps, losses = trainer.diverged_step.tolist(), trainer.diverged_loss.tolist()
        seconds = time.perf_counter() - started
        records, notes = [], []
        for i in range(k):
            if diverged[i]:
                records.append(None)
                continue
            if not alive[i]:
                batch = steps[i] - (epoch - 1) * trainer.steps_per_epoch + 1
                loss = losses[i]
                diverged[i] = {
                    "epoch": epoch,
                    "batch": batch,
                    "loss": loss if math.isfinite(loss) else str(loss),
                    "during": "training",
                }
                records.append(None)
                continue
            data_loss, penalty, correct = sums[i] / trainer.size
            test = score_logits(logits[:, i], trainer.test.labels)
            if not test.loss <= DIVERGED_LOSS:  # finite training loss, blown-up predictions
                diverged[i] = {
                    "epoch": epoch,
                    "batch": trainer.steps_per_epoch,
                    "loss": test.loss if math.isfinite(test.loss) else str(test.loss),
                    "during": "test",
                }
                trainer.alive[i] = False
                records.append(None)
                continue
            record = EpochRecord(
                epoch=epoch,
                train_loss=float(data_loss),
                penalty=float(penalty),
                train_accuracy=float(correct),
                test_loss=test.loss,
                test_accuracy=test.accuracy,
                lr=lrs[i],
                seconds=seconds,
            )
            histories[i].append(record)
            records.append(record)
            if penalty_dominates(record) and i not in warned:
                warned.add(i)
                notes.append(
                    f"{'' if k == 1 else f'member {i + 1}: '}the L1 penalty "
                    f"({record.penalty:.3g}) dwarfs the data term ({record.train_loss:.3g}): "
                    f"--l1 {configs[i].l1:g} leaves the data almost no say; try a smaller --l1"
                )
        if trainer.graph_error and epoch == done + 1:
            notes.append(f"CUDA graph capture failed ({trainer.graph_error}); trained eagerly")
        if reporter:
            reporter.epoch_finished(epoch, records, notes)
        states = trainer.member_states(histories, diverged)
        if on_epoch:
            on_epoch(states)
    info = {
        "group_size": k,
        "cuda_graphs": trainer.graphs and bool(trainer.captured),
        "deterministic": deterministic if trainer.device.type == "cuda" else True,
    }
    return trainer.member_states(histories, diverged), info
