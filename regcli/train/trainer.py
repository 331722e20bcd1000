"""Train a group of 1..K configs on one device as one grouped network, each member its own model.

Every member is the model it would be alone, in distribution: its own seed gives its initial
weights, data order and rotation angles; its mean cross-entropy, L1 penalty, weight decay (scope
included), momentum and schedule are its own; BatchNorm over K*C channels is per-member
BatchNorm. Only the dropout masks come from one generator shared by the group (seeded from all
members' seeds). A single run is a group of one: with K=1 the grouped network is exactly `Net`.

A step (`GroupTrainer.step`) is pure tensor work on fixed buffers, the learning rate and momentum
read from precomputed tables by a step counter on the device: eager on a CPU, replayed as CUDA
graphs on a GPU (no Python and no host sync inside an epoch). Each epoch's data order, angles and
dropout seed come from per-(seed, epoch) generators, so a resumed run needs no saved random state
to continue bit-identically on the same device. A member whose loss becomes non-finite or absurd
stops (its updates are masked from that step on, the step recorded); the others go on.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from regcli.core.config import GROUP_FIELDS, NUM_CLASSES, SIDE, UNIT, TrainConfig, group_key
from regcli.core.errors import Interrupted, UsageError, first_line
from regcli.core.events import Reporter
from regcli.data.mnist import Split, subsets
from regcli.inference.scoring import EVAL_BATCH
from regcli.nn.cpu_ops import keep_freed_memory
from regcli.nn.grouped import (
    FlatParameters,
    derived_seed,
    initial_state,
    pack,
    schedule_tables,
    unpack,
)
from regcli.nn.model import Net
from regcli.nn.pruning import PRUNABLE, magnitude_mask, stage_sparsity
from regcli.store.records import EpochRecord
from regcli.train.augment import RandomRotation
from regcli.train.devices import choose_kernels, out_of_memory
from regcli.train.epochs import DIVERGED_LOSS, EpochResults, Progress, run_info

NO_REPORTER = Reporter()  # a run nobody watches

WARMUP_STEPS = 3  # eager steps before CUDA graph capture (cuDNN and cuBLAS set-up)
CUDA_ELEMENTS_LIMIT = 2**30  # activation elements per evaluation chunk (cuDNN wants < 2**31)


@dataclass
class MemberState:
    """What one member needs to continue (saved in its last.pt after every epoch)."""

    weights: dict[str, torch.Tensor]  # an ordinary Net state dict
    momentum: dict[str, torch.Tensor]  # SGD momentum buffers, by parameter name
    history: list[EpochRecord]
    diverged: dict | None  # {"epoch", "batch", "loss", "during"} once it has stopped
    mask: dict[str, torch.Tensor] | None = None  # a pruned run's conv weights kept (pruning.py)


class StopFlag:
    """Set (by a signal handler) to ask the trainer to stop at the next batch boundary."""

    signal_number: int | None = None


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
        start: list[dict | None] | None = None,
        deterministic: bool = True,
        graphs: bool | None = None,
    ):
        if len({group_key(c) for c in configs}) != 1:
            shared = ", ".join(GROUP_FIELDS)
            raise UsageError(f"the members of one training group must share {shared}")
        self.configs, self.device, self.members = configs, torch.device(device), len(configs)
        self.epochs, self.batch_size = configs[0].epochs, configs[0].batch_size
        if self.device.type == "cuda":
            choose_kernels(deterministic)
        else:
            keep_freed_memory()  # the same results, sooner (cpu_ops.py)
        self.graphs = self.device.type == "cuda" if graphs is None else graphs
        self.captured: dict[int, torch.cuda.CUDAGraph] = {}
        self.graph_error: str | None = None  # why capture failed, if it did (then: eager)
        self.load_data(train_split, test_split)
        self.build_state(resume, start or [None] * self.members)
        self.make_buffers(resume)

    # --- set-up ----------------------------------------------------------------------------

    def load_data(self, train_split: Split, test_split: Split) -> None:
        """The training pool and test images on the device; each member's training subset and
        validation split (indices into the pool, `data.subsets`); the batches of an epoch."""
        first = self.configs[0]
        pool = train_split.head(first.limit_train)
        self.images, self.labels = self.on_device(pool.images), self.on_device(pool.labels)
        self.test = test_split.head(first.limit_test)
        self.test_images = self.on_device(self.test.images)
        chosen = [subsets(pool.labels, c.seed, c.train_size, c.val_size) for c in self.configs]
        self.subset = self.on_device(np.stack([train for train, _ in chosen]))  # [K, n]
        self.val_index = self.on_device(np.stack([val for _, val in chosen]))  # [K, v]
        self.train_labels = [pool.labels[train] for train, _ in chosen]
        self.val_labels = [pool.labels[val] for _, val in chosen]
        self.size = self.subset.shape[1]
        self.full_steps, self.tail = divmod(self.size, self.batch_size)
        self.pass_steps = self.full_steps + (self.tail > 0)
        self.passes = first.passes_per_epoch  # the fair-length rule (TrainConfig)
        self.steps_per_epoch = self.passes * self.pass_steps
        self.seen = self.passes * self.size  # images per member per epoch
        one_pass = [self.batch_size] * self.full_steps + ([self.tail] if self.tail else [])
        self.batches = one_pass * self.passes

    def build_state(self, resume: list[MemberState] | None, start: list[dict | None]) -> None:
        """The grouped network, its flat parameters and momentum (fresh, from `start` weights
        where given, or resumed), the pruning masks, every member's learning-rate and momentum
        schedule, and the rotation table."""
        first = self.configs[0]
        self.net = Net(first.dropout, members=self.members).to(self.device)
        fresh = [
            s if s is not None else initial_state(c)
            for s, c in zip(start, self.configs, strict=True)
        ]
        self.net.load_state_dict(pack([m.weights for m in resume] if resume else fresh))
        self.params = FlatParameters(self.net, self.configs)
        self.momentum = torch.zeros_like(self.params.vector)
        if resume:
            self.momentum.copy_(self.params.flatten(pack([m.momentum for m in resume])))
        self.mask = None  # True for a weight that trains, False for a pruned one (pruned runs)
        if any(c.sparsity for c in self.configs):
            self.mask = torch.ones_like(self.params.vector, dtype=torch.bool)
            if resume:
                self.set_masks([m.mask for m in resume])
        tables = schedule_tables(self.configs, self.steps_per_epoch, self.device)
        self.lr_table, self.momentum_table = tables  # [T + 1, K]: by step, then member
        self.rotate = RandomRotation(first.max_rotation, self.device)

    def make_buffers(self, resume: list[MemberState] | None) -> None:
        """Every tensor a step reads or writes besides the weights: step counters, the epoch's
        order and angles, the epoch's sums, who is alive, and per-batch-size constants."""
        k, n = self.members, self.steps_per_epoch * self.batch_size  # a batch's slots, padded
        done = max(len(m.history) for m in resume) if resume else 0  # a diverged one: fewer
        as_long = {"dtype": torch.long, "device": self.device}
        self.step_count = torch.full((1,), done * self.steps_per_epoch, **as_long)
        self.epoch_step = torch.zeros(1, **as_long)
        self.order = torch.zeros(k, n, **as_long)  # this epoch's data order, per member
        self.angles = torch.zeros(k, n, **as_long)  # this epoch's rotation angle indices
        self.sums = torch.zeros(k, 3, dtype=torch.float64, device=self.device)  # loss, penalty, ok
        self.alive = torch.ones(k, dtype=torch.bool, device=self.device)
        self.diverged_step = torch.full((k,), -1, **as_long)
        self.diverged_loss = torch.zeros(k, device=self.device)
        if resume:  # a member that has diverged stays stopped
            self.alive.copy_(torch.tensor([not m.diverged for m in resume]))
        self.positions = {size: torch.arange(size, **as_long) for size in set(self.batches)}
        self.scales = {  # a step's (mean loss, mean penalty, correct count) -> epoch sums
            size: torch.tensor([size, size, 1], dtype=torch.float64, device=self.device)
            for size in self.positions
        }

    # --- pruning ---------------------------------------------------------------------------

    def set_masks(self, masks: list[dict | None]) -> None:
        """Each member's conv-weight mask (None: it prunes nothing) into the flat mask."""
        state = initial_state(self.configs[0])  # a member's shapes
        ones = {k: torch.ones_like(v, dtype=torch.bool) for k, v in state.items()}
        members = [{**ones, **(m or {})} for m in masks]
        self.mask.copy_(self.params.flatten(pack(members)))

    def member_masks(self) -> list[dict | None]:
        """Each pruned member's mask over its conv weights (True: kept), on the CPU."""
        if self.mask is None:
            return [None] * self.members
        masks = unpack(
            {k: v.cpu() for k, v in self.params.unflatten(self.mask).items()}, self.members
        )
        return [
            {name: m[name].clone() for name in PRUNABLE} if c.sparsity else None
            for m, c in zip(masks, self.configs, strict=True)
        ]

    def prune_step(self, epoch: int) -> None:
        """At the first epoch of each prune-then-retrain step, each pruned member's smallest conv
        weights join its mask and are zeroed, and its momentum restarts (a fresh optimizer); a
        member that has diverged is left as it stopped."""
        steps = self.configs[0].prune_steps
        per_step = self.epochs // steps
        if self.mask is None or (epoch - 1) % per_step:
            return
        stage = (epoch - 1) // per_step + 1
        weights = unpack({k: v.cpu() for k, v in self.net.state_dict().items()}, self.members)
        alive, masks = self.alive.tolist(), []
        members = zip(self.configs, weights, self.member_masks(), strict=True)
        for i, (config, w, kept) in enumerate(members):
            share = stage_sparsity(config.sparsity, steps, stage)
            pruning = config.sparsity and alive[i]
            masks.append(magnitude_mask(w, share, kept) if pruning else kept)
        self.set_masks(masks)
        fresh = [bool(c.sparsity) and a for c, a in zip(self.configs, alive, strict=True)]
        restart = torch.tensor(fresh, device=self.device).index_select(0, self.params.member_of)
        with torch.no_grad():
            self.params.vector.masked_fill_(~self.mask, 0.0)
            self.momentum.masked_fill_(restart, 0.0)

    def on_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

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
        if self.mask is not None:  # a pruned weight gets no gradient and stays exactly zero
            gradient = torch.where(self.mask, gradient, 0.0)
        d = torch.addcmul(torch.addcmul(gradient, p.l1, w.sign()), p.weight_decay, w)
        buffer = torch.addcmul(d, momentum.index_select(0, owner), self.momentum)
        step = torch.addcmul(w, lr.index_select(0, owner), buffer, value=-1)
        if self.mask is not None:  # (where, not a product: inf * 0 would be NaN)
            step = torch.where(self.mask, step, 0.0)
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
        weights = [self.params.vector, self.momentum, *self.net.buffers()]
        counters = [self.step_count, self.epoch_step, self.sums]
        return [*weights, *counters, self.alive, self.diverged_step, self.diverged_loss]

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
            if out_of_memory(error):
                raise  # the group does not fit: runner.py splits it
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
        """This epoch's data order and rotation angles per member, and the dropout seed: per
        pass a permutation of the member's subset, laid out from its pass's first batch slot."""
        slots = self.pass_steps * self.batch_size
        self.order.zero_()
        self.angles.zero_()
        for i, config in enumerate(self.configs):
            generator = torch.Generator().manual_seed(derived_seed(config.seed, epoch, "data"))
            for number in range(self.passes):
                at = slice(number * slots, number * slots + self.size)
                permutation = torch.randperm(self.size, generator=generator).to(self.device)
                self.order[i, at] = self.subset[i].index_select(0, permutation)
                angles = torch.randint(len(self.rotate.angles), (self.size,), generator=generator)
                self.angles[i, at] = angles.to(self.device)
        torch.manual_seed(derived_seed([c.seed for c in self.configs], epoch, "dropout"))

    def train_epoch(
        self, epoch: int, reporter: Reporter = NO_REPORTER, stop: StopFlag | None = None
    ) -> np.ndarray:
        """One epoch (its passes); per-member sums (data loss, penalty, correct), numpy [K, 3]."""
        self.prune_step(epoch)
        self.net.train()
        if self.graphs and not self.captured:
            self.capture()  # before the epoch's seeds: warm-up draws must not shift them
        self.draw_epoch(epoch)
        self.epoch_step.zero_()
        self.sums.zero_()
        reader = RunningLoss(self)
        reporter.epoch_started(epoch, reader.read)
        for number, batch in enumerate(self.batches, 1):
            if stop is not None and stop.signal_number is not None:
                message = f"stopped in epoch {epoch} at batch {number}/{len(self.batches)}"
                raise Interrupted(message, stop.signal_number)
            self.run_step(batch)
            reader.stepped(number)
            reporter.step_done()
        return self.sums.cpu().numpy()

    def test_logits(self) -> np.ndarray:
        """Logits [N, K, 10] of every member on the test images, in eval mode and in chunks."""
        return self.logits(self.test_images)

    def val_logits(self) -> np.ndarray | None:
        """Logits [v, K, 10] of each member on its own validation images (None: no split)."""
        return self.logits(self.images[self.val_index]) if self.val_index.shape[1] else None

    def fit_logits(self) -> np.ndarray | None:
        """Logits [n, K, 10] of each member on its own training subset, clean (eval mode, no
        rotation); measured for --train-size runs only (a pass over 60,000 is not free)."""
        return self.logits(self.images[self.subset]) if self.configs[0].train_size else None

    def logits(self, images: torch.Tensor) -> np.ndarray:
        """Eval-mode logits [N, K, 10] of uint8 images, [N, 28, 28] for every member alike or
        [K, N, 28, 28] one set per member, in chunks."""
        self.net.eval()
        k, n = self.members, images.shape[-3]
        per_image = k * 16 * SIDE * SIDE  # the widest activation, elements per test image
        chunk = max(1, min(EVAL_BATCH, CUDA_ELEMENTS_LIMIT // per_image))
        out = []
        with torch.no_grad():
            for start in range(0, n, chunk):
                if images.dim() == 3:
                    pixels = images[start : start + chunk].float() * UNIT
                    x = pixels.unsqueeze(1).expand(-1, k, -1, -1).contiguous()
                else:
                    pixels = images[:, start : start + chunk].float() * UNIT
                    x = pixels.transpose(0, 1).contiguous()
                out.append(self.net(x).view(-1, k, NUM_CLASSES).cpu())
        return torch.cat(out).numpy()

    def member_states(self, histories: list, diverged: list) -> list[MemberState]:
        """Each member's weights and momentum as ordinary Net-shaped dicts, on the CPU."""
        state = self.net.state_dict()  # the parameters live in the flat vector
        weights = unpack({k: v.cpu() for k, v in state.items()}, self.members)
        momentum = self.params.unflatten(self.momentum)
        momenta = unpack({k: v.cpu() for k, v in momentum.items()}, self.members)
        masks = self.member_masks()
        return [
            MemberState(w, m, list(h), d, mask)
            for w, m, h, d, mask in zip(weights, momenta, histories, diverged, masks, strict=True)
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
        loss = torch.where(t.alive, t.sums[:, 0], 0.0).sum()
        seen = t.epoch_step.double()[0] * t.batch_size * t.alive.double().sum()
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


def train_group(
    configs: list[TrainConfig],
    train_split: Split,
    test_split: Split,
    device: torch.device,
    *,
    reporter: Reporter = NO_REPORTER,
    resume: list[MemberState] | None = None,
    start: list[dict | None] | None = None,
    on_epoch: Callable[[list[MemberState]], None] | None = None,
    stop: StopFlag | None = None,
    deterministic: bool = True,
    graphs: bool | None = None,
    label: str = "",
) -> tuple[list[MemberState], dict]:
    """Train every config to its last epoch (or until every member has diverged).

    `resume` is what `on_epoch` was given after the last completed epoch; training continues
    from there. `start`: each member's initial weights (None: its seed's), e.g. a pruned run's.
    Returns each member's final state and history (diverged members: up to their last good
    epoch, with `diverged` saying where), and how the group was trained.
    """
    splits = train_split, test_split
    trainer = GroupTrainer(
        configs,
        *splits,
        device,
        resume=resume,
        start=start,
        deterministic=deterministic,
        graphs=graphs,
    )
    progress = Progress(trainer, resume)
    first = max(len(h) for h in progress.histories) + 1  # a diverged member's is shorter
    reporter.run_started(label, trainer.members, trainer.epochs, trainer.steps_per_epoch, first)
    for epoch in range(first, trainer.epochs + 1):
        if all(progress.diverged):
            break
        started = time.perf_counter()
        sums = trainer.train_epoch(epoch, reporter, stop)
        reporter.testing()
        results = EpochResults.read(trainer, sums, started)
        records = progress.judge(epoch, results)
        notes = progress.penalty_warnings(records)
        if trainer.graph_error and epoch == first:
            notes.append(f"CUDA graph capture failed ({trainer.graph_error}); trained eagerly")
        reporter.epoch_finished(epoch, records, notes)
        if on_epoch:
            on_epoch(progress.states())
    return progress.states(), run_info(trainer, deterministic)
