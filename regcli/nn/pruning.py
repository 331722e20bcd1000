"""Magnitude pruning with a fixed mask.

A pruned run (`regcli prune --retrain`) starts from another run's weights, zeroes the conv
weights of smallest magnitude (one ranking over all conv layers, as Han et al. 2015 prune), and
retrains with those weights held at exactly zero: the trainer masks their gradient and their
update at every SGD step. `--iterative N` reaches the sparsity s in N prune-then-retrain steps
whose kept shares fall geometrically, step k keeping (1 - s) ** (k / N) of the conv weights
(so every step removes the same share of what is left); each step retrains with its own
schedule from a fresh optimizer. Weights pruned at one step stay pruned at the next.

A pruned run's settings (its TrainConfig) are jobs/pruned_runs.py's.
"""

import torch

from regcli.core.config import TrainConfig
from regcli.nn.model import Net, regularized_parameters


def prunable_names(dropout: float = 0.0) -> list[str]:
    """The state-dict names of the conv weights: what pruning zeroes (and L1 and L2 act on)."""
    net = Net(dropout)
    weights = {id(p) for p in regularized_parameters(net, "weights")}
    return [name for name, p in net.named_parameters() if id(p) in weights]


PRUNABLE = tuple(prunable_names())


def stage_sparsity(sparsity: float, steps: int, stage: int) -> float:
    """The sparsity reached at prune-then-retrain step `stage` (1..steps) of `steps`."""
    return sparsity if stage == steps else 1 - (1 - sparsity) ** (stage / steps)


def pruned_count(sparsity: float, total: int) -> int:
    return round(sparsity * total)


def magnitude_mask(
    weights: dict[str, torch.Tensor], sparsity: float, kept: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Which conv weights stay (True) when the round(sparsity * N) of smallest magnitude go; the
    ones `kept` already drops go first, so a mask only ever grows. Ties go to the lower index."""
    flat = torch.cat([weights[name].detach().abs().flatten().double() for name in PRUNABLE])
    if kept is not None:
        was = torch.cat([kept[name].flatten() for name in PRUNABLE])
        flat = torch.where(was, flat, torch.full_like(flat, -1.0))
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[flat.argsort(stable=True)[: pruned_count(sparsity, flat.numel())]] = False
    mask, start = {}, 0
    for name in PRUNABLE:
        size = weights[name].numel()
        mask[name] = keep[start : start + size].view_as(weights[name]).cpu()
        start += size
    return mask


def apply_mask(weights: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> dict:
    """The weights with the masked-out ones set to exactly zero."""
    return {k: v * mask[k].to(v.dtype) if k in mask else v for k, v in weights.items()}


def mask_problem(mask, weights: dict, config: TrainConfig, finished: bool = True) -> str | None:
    """Why `mask` is not a pruned run's mask for these weights and this config (None if it is):
    a boolean tensor of the right shape for each conv weight, the pruned weights exactly zero,
    and (once the run is finished) as many pruned as the config's sparsity asks."""
    if config.sparsity == 0:
        return None if mask is None else "a mask, but its config prunes nothing"
    if not isinstance(mask, dict) or set(mask) != set(PRUNABLE):
        return "no pruning mask for each conv weight"
    for name in PRUNABLE:
        m, w = mask[name], weights.get(name) if isinstance(weights, dict) else None
        if not isinstance(w, torch.Tensor):
            return f"no weight {name} for its pruning mask"
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != w.shape:
            return f"pruning mask {name} is not a boolean tensor of its weight's shape"
        if (w[~m] != 0).any():
            return f"weights pruned by the mask are not zero in {name}"
    pruned = sum(int((~mask[name]).sum()) for name in PRUNABLE)
    total = sum(mask[name].numel() for name in PRUNABLE)
    if finished and pruned != pruned_count(config.sparsity, total):
        return f"the mask prunes {pruned} of {total} conv weights, not sparsity {config.sparsity:g}"
    return None
