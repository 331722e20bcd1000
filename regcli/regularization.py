"""L1 as a loss term, L2 as SGD's coupled weight decay, and which parameters each one touches.

Scope "weights" (the default) regularizes conv and linear weights only: penalizing BatchNorm's
scale and shift or biases pulls them towards zero, which changes what the layer computes rather
than its complexity. Scope "all" regularizes every parameter, as the classic course notebooks did.
"""

import torch
from torch import nn

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def regularized_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    if scope == "all":
        return list(model.parameters())
    return [m.weight for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]


def l1_penalty(model: nn.Module, strength: float, scope: str) -> torch.Tensor:
    """strength * sum(|w|) over the parameters in scope; an exact zero when strength is 0."""
    params = regularized_parameters(model, scope)
    if strength == 0:
        return torch.zeros((), device=params[0].device)
    return strength * sum(p.abs().sum() for p in params)


def parameter_groups(model: nn.Module, weight_decay: float, scope: str) -> list[dict]:
    """SGD parameter groups: weight_decay on the parameters in scope, none on the rest."""
    decayed = {id(p) for p in regularized_parameters(model, scope)}
    groups = [
        {
            "params": [p for p in model.parameters() if id(p) in decayed],
            "weight_decay": weight_decay,
        },
        {"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
