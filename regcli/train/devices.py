"""Which device trains, how many models it trains at once, and on how many threads.

`auto` picks CUDA, then Apple's MPS, then the CPU; an explicit choice must be available. On CUDA
a group holds all the models that fit (a generous memory estimate per model); on a CPU one model
at a time measured faster than a group (`make bench`), so that is the default there, and each
model trains on one thread (a little slower than every core on a quiet machine, far faster on a
busy one, where every core spins), one process per core side by side (regcli/jobs/pool.py).
"""

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from regcli.core.config import Device
from regcli.core.errors import RegcliError, UsageError

CPU_THREADS = 1  # threads per model on a CPU: under load far faster than every core (make bench)
CPU_GROUP_SIZE = 1  # on a CPU (and MPS) one model at a time: grouped is slower there (make bench)
GPU_MODEL_BYTES = 200 * 2**20  # a generous GPU memory estimate per model in a group (batch 128)
MAX_GROUP_SIZE = 256  # cuDNN's 32-bit index limits come into view well above this


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit choice must be available."""
    try:
        name = Device(name).value
    except ValueError:
        choices = ", ".join(Device)
        raise UsageError(f"unknown device {name!r}; choose one of {choices}") from None
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


def default_group_size(device: torch.device) -> int:
    """All that fit on CUDA (a generous memory estimate); one at a time elsewhere (measured)."""
    if device.type != "cuda":
        return CPU_GROUP_SIZE
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(MAX_GROUP_SIZE, int(0.6 * free) // GPU_MODEL_BYTES))


def choose_kernels(deterministic: bool) -> None:
    """On CUDA: cuDNN's deterministic kernels (bit-for-bit resume), or the fastest it finds."""
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def out_of_memory(error: BaseException) -> bool:
    """CUDA out of memory: PyTorch's own error, or cuDNN's and cuBLAS's as a RuntimeError."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


CPU_QUOTA = Path("/sys/fs/cgroup/cpu.max")  # a container's CPU limit (cgroup v2): "quota period"


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (else every core), and no more than
    a container's CPU quota allows."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        cores = os.cpu_count() or 1
    try:
        quota, period = CPU_QUOTA.read_text()[:64].split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        pass  # no quota, or none this process can read
    return max(1, cores)


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """PyTorch's CPU threads set to `count` for a while, then set back."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
