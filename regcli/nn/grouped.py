"""K Nets as one grouped network, and back: how a group of configs becomes tensors.

`Net(members=K)` holds K networks side by side (every convolution has groups=K). Its state dict
is the K members' state dicts concatenated along the first axis, so packing and unpacking is a
cat and a chunk, and a member unpacked from a group is an ordinary `Net` state dict.

For the trainer, all K*P parameters live in one flat vector (`FlatParameters`), parameter by
parameter as the state dict orders them. Per-member quantities (learning rate, momentum, L1 and
weight decay strengths, the alive mask) become per-element ones with one gather through
`member_of`, so the SGD update of every member is a handful of elementwise kernels, and
per-member sums (the L1 penalty) are one gather through `by_member` and a row sum. Each
member's learning-rate and momentum schedule, read off PyTorch's own schedulers, is one column
of a per-step table (`schedule_tables`).
"""

import hashlib

import torch

from regcli.core.config import TrainConfig
from regcli.nn.model import Net, regularized_parameters


def pack(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """K Net state dicts -> one Net(members=K) state dict."""
    packed = {}
    for key, first in states[0].items():
        if first.ndim == 0:  # BatchNorm's num_batches_tracked: the members step together
            packed[key] = first.clone()
        else:
            packed[key] = torch.cat([s[key] for s in states])
    return packed


def unpack(state: dict[str, torch.Tensor], members: int) -> list[dict[str, torch.Tensor]]:
    """One Net(members=K) state dict -> K ordinary Net state dicts (each its own storage)."""
    return [
        {
            key: value.detach().clone()
            if value.ndim == 0
            else value.detach().chunk(members)[i].clone()
            for key, value in state.items()
        }
        for i in range(members)
    ]


def initial_state(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The member's own initial weights: exactly those of Net() after torch.manual_seed(seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Net(config.dropout).state_dict()


def derived_seed(*parts) -> int:
    """A 63-bit seed from any parts (seeds, epoch, purpose): the same parts, the same seed."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def schedule_table(config: TrainConfig, steps_per_epoch: int) -> tuple[list[float], list[float]]:
    """Learning rate and momentum at every step 0..T (T = all steps), read off PyTorch's own
    scheduler so that a grouped member follows exactly the schedule it would follow alone.
    A pruned run of several prune-then-retrain steps starts the schedule again at each step."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=config.lr, momentum=config.momentum)
    total = config.epochs // config.prune_steps * steps_per_epoch
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
    stages = config.prune_steps
    return lrs[:-1] * stages + lrs[-1:], momenta[:-1] * stages + momenta[-1:]


def schedule_tables(
    configs: list[TrainConfig], steps_per_epoch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's learning rate and momentum at every step, as two [T + 1, K] tensors on
    the device (a step's K values contiguous), for a step counter on the device to read."""
    tables = [schedule_table(c, steps_per_epoch) for c in configs]
    lrs, momenta = (
        torch.tensor([table[j] for table in tables], device=device).T.contiguous() for j in (0, 1)
    )
    return lrs, momenta


class FlatParameters:
    """The parameters of a Net(members=K) stored in one flat vector, with per-member bookkeeping.

    Each nn.Parameter's storage becomes a view of `vector` (as FSDP's flat parameters do), so
    the module runs as it is, an update written into the vector is the update of every
    parameter, and the parameters' gradients laid end to end are the vector's gradient.
    """

    def __init__(self, net: Net, configs: list[TrainConfig]):
        self.members = k = len(configs)
        self.names, self.shapes, self.offsets = [], [], []
        total = 0
        params = dict(net.named_parameters())
        for name, p in params.items():
            self.names.append(name)
            self.shapes.append(p.shape)
            self.offsets.append(total)
            total += p.numel()
        self.size = total
        self.per_member = total // k
        device = next(net.parameters()).device
        self.vector = torch.cat([p.detach().flatten() for p in params.values()])
        self.parameters = list(params.values())
        for p, view in zip(self.parameters, self.views().values(), strict=True):
            p.data = view  # the parameter now lives in the vector
        # member_of[i]: which member owns element i (a parameter's K slices are contiguous)
        self.member_of = torch.cat(
            [
                torch.arange(k, device=device).repeat_interleave(p.numel() // k)
                for p in params.values()
            ]
        )
        # by_member: reorders the vector into [K, P] rows, one per member
        order = torch.argsort(self.member_of, stable=True)
        self.by_member = order
        self.l1 = self.per_element(net, configs, "l1")
        self.weight_decay = self.per_element(net, configs, "weight_decay")

    def per_element(self, net: Net, configs: list[TrainConfig], strength: str) -> torch.Tensor:
        """Each element's L1 or weight-decay strength: its member's, if the element is in that
        member's regularization scope (conv weights, or every parameter for scope "all")."""
        values = torch.zeros(self.size, dtype=self.vector.dtype, device=self.vector.device)
        k = self.members
        in_scope = {
            scope: {id(p) for p in regularized_parameters(net, scope)}
            for scope in ("weights", "all")
        }
        for p, offset in zip(net.parameters(), self.offsets, strict=True):
            n = p.numel() // k
            for member, config in enumerate(configs):
                if id(p) in in_scope[config.reg_scope]:
                    start = offset + member * n
                    values[start : start + n] = getattr(config, strength)
        return values

    def views(self, vector: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        vector = self.vector if vector is None else vector
        return {
            name: vector[offset : offset + shape.numel()].view(shape)
            for name, shape, offset in zip(self.names, self.shapes, self.offsets, strict=True)
        }

    def member_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Per-member sums [K] of a per-element vector."""
        return values.index_select(0, self.by_member).view(self.members, -1).sum(1)

    def flatten(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """A packed, parameter-shaped dict (e.g. momentum buffers) as one flat vector."""
        return torch.cat([state[name].flatten() for name in self.names]).to(self.vector.device)

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: view.detach() for name, view in self.views(vector).items()}
