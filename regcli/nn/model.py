"""The notebook's <10k-parameter CNN: 3x3 conv blocks, one transition, global average pooling.

The network takes raw pixels in [0, 1] and normalizes them itself, so a checkpoint or an ONNX
file is usable without knowing MNIST's mean and standard deviation.

`Net(members=K)` is K of these networks side by side as one (see grouped.py): every convolution
has `groups=K`, so member k owns channels k*C..(k+1)*C-1 of every layer, reads input channel k
and writes logits 10k..10k+9. With members=1 it is exactly the single network.
"""

import numpy as np
import torch
from torch import nn

from regcli.core.config import MNIST_MEAN, MNIST_STD, NUM_CLASSES
from regcli.core.tables import render
from regcli.nn import cpu_ops


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - MNIST_MEAN) / MNIST_STD


class Dropout(nn.Dropout):
    """nn.Dropout whose masks, on a CPU, come from numpy's PCG64 rather than torch's generator.

    torch draws a CPU dropout mask with one Mersenne-Twister number per activation, and for this
    network that is close to half of a training step. One 64-bit PCG64 draw gives four 16-bit
    uniforms instead (cpu_ops.dropout_mask), so a unit is dropped with probability p to within
    1e-5. The generator is seeded from torch's, so torch.manual_seed still fixes every mask and
    a resumed run stays bit-identical. Other devices keep torch's fused kernel; in eval mode
    this is the identity, exactly like nn.Dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        seed = int(torch.randint(2**62, ()))
        return cpu_ops.apply_dropout(x, cpu_ops.dropout_mask(x.shape, self.p, seed), self.p)


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d(2), through cpu_ops.max_pool_2x2 on a CPU (the same numbers, sooner)."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_ops.max_pool_2x2(x) if cpu_ops.fast_pool(x) else super().forward(x)


def conv_block(
    in_channels: int,
    out_channels: int,
    dropout: float,
    kernel_size: int = 3,
    padding: int = 0,
    members: int = 1,
) -> nn.Sequential:
    """conv -> ReLU -> BatchNorm -> dropout, the notebook's block (no bias: BatchNorm has one)."""
    k = members
    return nn.Sequential(
        nn.Conv2d(
            k * in_channels, k * out_channels, kernel_size, padding=padding, bias=False, groups=k
        ),
        nn.ReLU(),
        nn.BatchNorm2d(k * out_channels),
        Dropout(dropout),
    )


class Net(nn.Module):
    """1x28x28 -> 10 logits (K x 28x28 -> 10K for K members); sizes and receptive fields below."""

    def __init__(self, dropout: float = 0.05, members: int = 1):
        super().__init__()
        k = self.members = members
        self.layers = nn.Sequential(
            Normalize(),
            conv_block(1, 10, dropout, members=k),  # 26x26, RF 3
            conv_block(10, 16, dropout, members=k),  # 24x24, RF 5
            MaxPool2d(),  # 12x12, RF 6: the transition ...
            conv_block(16, 10, dropout, kernel_size=1, members=k),  # ... and its 1x1 squeeze
            conv_block(10, 10, dropout, members=k),  # 10x10, RF 10
            conv_block(10, 16, dropout, members=k),  # 8x8, RF 14
            conv_block(16, 16, dropout, members=k),  # 6x6, RF 18
            conv_block(16, 16, dropout, padding=1, members=k),  # 6x6, RF 22
            nn.AdaptiveAvgPool2d(1),  # 1x1, sees the whole image
            nn.Conv2d(k * 16, k * NUM_CLASSES, 1, bias=False, groups=k),  # classifier, no FC
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def torch_predictor(model: nn.Module):
    """The model as a predictor (see scoring.py): eval mode, no autograd, numpy in and out."""
    device = next(model.parameters()).device

    def predict(images: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return model(torch.from_numpy(images).to(device)).float().cpu().numpy()

    return predict


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_summary(model: Net, input_size: int = 28) -> list[dict]:
    """One row per layer of the network: what it is, output shape, parameters, receptive field.

    The receptive field (in input pixels) grows by (kernel - 1) * jump at each layer, where jump
    is the product of the strides so far; global average pooling sees its whole input.
    """
    rows, receptive_field, jump = [], 1, 1
    x = torch.zeros(1, 1, input_size, input_size)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for layer in model.layers:
            spatial_in = x.shape[-1]
            x = layer(x)
            kernel, stride = _kernel_and_stride(layer, spatial_in)
            receptive_field += (kernel - 1) * jump
            jump *= stride
            rows.append(
                {
                    "layer": _describe(layer),
                    "output_shape": list(x.shape[1:]),
                    "parameters": count_parameters(layer),
                    "receptive_field": receptive_field,
                }
            )
    model.train(was_training)
    return rows


def layer_table(rows: list[dict]) -> str:
    """`regcli summary`: layer_summary's rows as a text table, with the total."""
    body = [
        [
            r["layer"],
            "x".join(map(str, r["output_shape"])),
            f"{r['parameters']:,}",
            str(r["receptive_field"]),
        ]
        for r in rows
    ]
    body.append(["total", "", f"{sum(r['parameters'] for r in rows):,}", ""])
    return render(["layer", "output", "params", "RF"], body)


def _kernel_and_stride(layer: nn.Module, spatial_in: int) -> tuple[int, int]:
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return spatial_in, 1
    first = layer[0] if isinstance(layer, nn.Sequential) else layer
    kernel, stride = getattr(first, "kernel_size", 1), getattr(first, "stride", 1)
    return _first(kernel), _first(stride)


def _describe(layer: nn.Module) -> str:
    if isinstance(layer, nn.Sequential):  # a conv_block
        conv, dropout = layer[0], layer[3]
        k = conv.kernel_size[0]
        return (
            f"conv {k}x{k} {conv.in_channels}->{conv.out_channels}, ReLU, BN, dropout {dropout.p:g}"
        )
    if isinstance(layer, nn.Conv2d):
        k = layer.kernel_size[0]
        return f"conv {k}x{k} {layer.in_channels}->{layer.out_channels} (classifier)"
    if isinstance(layer, nn.MaxPool2d):
        return f"max-pool {_first(layer.kernel_size)}x{_first(layer.kernel_size)}"
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return "global average pool"
    return type(layer).__name__.lower()


def _first(value) -> int:
    return value[0] if isinstance(value, tuple) else value


# --- which parameters L1 and L2 regularization touch ------------------------------------------
# L1 adds l1 * sum(|w|) to the loss; L2 is SGD's coupled weight decay (the gradient gains
# weight_decay * w). Scope "weights" (the default) regularizes conv and linear weights only:
# penalizing BatchNorm's scale and shift or biases pulls them towards zero, which changes what the
# layer computes rather than its complexity. Scope "all" regularizes every parameter, as the
# classic course notebooks did. The trainer (train/, nn/grouped.py) applies both per model.

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def regularized_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    if scope == "all":
        return list(model.parameters())
    return [m.weight for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
