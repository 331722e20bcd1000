"""Which parameters L1 and L2 regularization touch.

L1 adds l1 * sum(|w|) to the loss; L2 is SGD's coupled weight decay (the gradient gains
weight_decay * w). Scope "weights" (the default) regularizes conv and linear weights only:
penalizing BatchNorm's scale and shift or biases pulls them towards zero, which changes what the
layer computes rather than its complexity. Scope "all" regularizes every parameter, as the
classic course notebooks did. The trainer (train.py, grouped.py) applies both per model.
"""

from torch import nn

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def regularized_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    if scope == "all":
        return list(model.parameters())
    return [m.weight for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
