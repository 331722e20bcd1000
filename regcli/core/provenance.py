"""Where and how a run was made: command line, times, machine, versions, code commit.

Every model (checkpoint, metrics.json, ONNX metadata) and every bench result carries this record,
so a number can always be traced to the machine and the code that produced it.
"""

import os
import platform
import subprocess
import sys
from contextlib import suppress
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import regcli

PACKAGE_DIR = Path(regcli.__file__).resolve().parent


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions() -> dict:
    """Python, regcli and the libraries that decide the numbers (read without importing them)."""
    found = {"regcli": regcli.__version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "onnxruntime", "numpy"):
        with suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    if "torch" in sys.modules:  # the running build, e.g. 2.11.0+cu130 on a GPU machine
        found["torch"] = str(sys.modules["torch"].__version__)
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict:
    """CPU model and cores; GPU name and memory when the device is CUDA."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()}
    if device.startswith("cuda"):
        import torch

        properties = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
    return info


def code_version() -> dict | None:
    """The git commit regcli runs from, and whether the package's tracked files differ from it
    (dirty: the code, not the models or figures it writes).

    None when regcli is not running from a git checkout (an installed copy).
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")  # the package
    if commit is None or status is None:
        return None
    return {"git_commit": commit, "dirty": bool(status)}


def run_record(command: list[str], started: str, device: str, **extra) -> dict:
    """The provenance of one run (or export, or bench), as plain data."""
    return {
        "command": list(command),
        "started": started,
        "finished": utc_now(),
        "device": device,
        "machine": machine(device),
        "versions": versions(),
        "code": code_version(),
        **extra,
    }
