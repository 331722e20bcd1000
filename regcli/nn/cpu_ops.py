"""CPU fast paths that give PyTorch's own results, bit for bit, in less time.

On a small CPU a training step of this network is bound less by arithmetic than by memory and by
a few slow kernels. Profiled on one thread of a 2-core machine, three of them were worth
replacing (`make bench-main-job` measures what they buy the main job, tests/test_cpu_ops.py
checks that whole training steps come out the same with and without them):

- Every activation is a few MB (an evaluation chunk's, tens of MB), which glibc's malloc serves
  by mmap and hands back on free, so each step faults in fresh zeroed pages, costly in a VM:
  `keep_freed_memory` makes it reuse freed blocks instead.
- `torch.where(keep, x * scale, 0.0)`, the dropout of model.py, runs a slow kernel on a CPU;
  a float mask (`dropout_mask`) multiplied in gives the same numbers.
- `F.max_pool2d(x, 2)` on a contiguous NCHW tensor is several times slower than four strided
  `torch.maximum` calls; `max_pool_2x2` computes those and, backward, gives each window's
  gradient to its first maximum in scan order, as max_pool2d's indices do.

`FAST = False` turns all three off (tests compare the two paths).
"""

import ctypes
import sys

import numpy as np
import torch

FAST = True  # False: PyTorch's own kernels and malloc's defaults (the reference the tests use)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLDS = (2**30, 32 * 2**20)  # bytes: smaller blocks come from the reused heap (the
# first that this glibc accepts: an evaluation chunk's activations take ~40 MB)
TRIM_THRESHOLD = 2**30  # bytes of free memory at the heap's top kept rather than handed back


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep and reuse freed blocks up to 1 GB (else 32 MB); False where it
    cannot (not Linux, not glibc, or FAST off). Memory in use is unchanged; the process keeps
    its peak."""
    if not FAST or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not any(mallopt(M_MMAP_THRESHOLD, size) for size in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def dropout_mask(shape: torch.Size, p: float, seed: int) -> torch.Tensor:
    """float32 mask of `shape`: 1/(1-p) for a unit kept, 0 for one dropped.

    One 64-bit PCG64 draw gives four 16-bit uniforms; a unit is dropped when its uniform is below
    round(p * 65536), so with probability p to within 1e-5 (see model.Dropout).
    """
    count = shape.numel()
    words = np.random.default_rng(seed).bit_generator.random_raw(-(-count // 4))
    uniform = words.view(np.int16)[:count]  # int16 spans -32768..32767
    keep = np.greater_equal(uniform, round(p * 65536) - 32768)
    if not FAST:  # the reference: the same mask, applied as torch.where
        return torch.from_numpy(keep).view(shape)
    scale = np.float32(1 / (1 - p))
    return torch.from_numpy(np.multiply(keep, scale, dtype=np.float32)).view(shape)


def apply_dropout(x: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """x with dropout_mask's mask applied (x * 1/(1-p) where kept, 0 where dropped)."""
    if mask.dtype == torch.bool:
        return torch.where(mask, x * (1 / (1 - p)), 0.0)
    return x * mask


def corners(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four positions of every 2x2 window, in max_pool2d's scan order."""
    return x[..., ::2, ::2], x[..., ::2, 1::2], x[..., 1::2, ::2], x[..., 1::2, 1::2]


class MaxPool2x2(torch.autograd.Function):
    """2x2 max pooling, stride 2, of an N x C x H x W tensor with H and W even.

    Bit for bit max_pool2d's for finite gradients. A non-finite one (only a diverged run has
    one, and its updates are masked already) spreads within its window: inf * 0 is NaN.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        a, b, c, d = corners(x)
        top = torch.maximum(torch.maximum(a, b), torch.maximum(c, d))
        ctx.save_for_backward(x, top)
        return top

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, top = ctx.saved_tensors
        a, b, c, _ = corners(x)
        first = a == top  # the first maximum in scan order takes the window's gradient
        second = (b == top).logical_and_(~first)
        taken = first | second
        third = (c == top).logical_and_(~taken)
        fourth = ~taken.logical_or_(third)
        result = torch.empty_like(x)  # every element is in exactly one corner
        for chosen, target in zip((first, second, third, fourth), corners(result), strict=True):
            torch.mul(grad, chosen, out=target)
        return result


def fast_pool(x: torch.Tensor) -> bool:
    """Whether max_pool_2x2 serves this input: a CPU tensor with even sides, outside export."""
    if not FAST or x.device.type != "cpu" or x.dim() != 4 or x.shape[-1] % 2 or x.shape[-2] % 2:
        return False
    return not (torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    return MaxPool2x2.apply(x)
