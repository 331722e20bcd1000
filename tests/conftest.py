"""What every test file shares: real MNIST, one quick real model (and its ONNX export), a CLI
runner, a snapshot of a folder's files, and the check that an error is one clean line."""

import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regcli.cli import app
from regcli.config import TrainConfig
from regcli.data import load_split
from regcli.runs import Request, train_job

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"
# One epoch on the first 10,000 training images: the quick, real model every inference test uses.
QUICK_CONFIG = TrainConfig(epochs=1, batch_size=64, lr=0.1, limit_train=10_000, limit_test=2_000)
# The smallest real runs: for tests of bookkeeping, not of learning.
TINY = ["--epochs", "1", "--limit-train", "256", "--limit-test", "128", "--device", "cpu"]

runner = CliRunner()


def invoke(*args):
    """Run regcli in-process; every argument as a string."""
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int, fragment: str = "") -> str:
    """The command failed with `code` and said so in exactly one line, without a traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(("error: ", "interrupted: ")), lines[0]
    assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every file under folder with its bytes, to prove a failed command changed nothing."""
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def train_cpu(requests: list[Request], models: Path, **options):
    """`regcli train`'s own path on the CPU: named folders, nothing forced or resumed, no
    figures, unless options say otherwise."""
    settings = dict(
        models_dir=models,
        images_dir=None,
        data_dir=DATA_DIR,
        auto_name=False,
        force=False,
        resume=False,
        device_name="cpu",
    )
    return train_job(requests, **{**settings, **options})


def train_model(config: TrainConfig, name: str, models: Path, images: Path | None = None) -> Path:
    """Train one model through the same path as `regcli train` (on the CPU)."""
    (outcome,) = train_cpu([Request(config, name)], models, images_dir=images)
    return outcome.model_dir


def places(root: Path) -> list:
    """--models-dir and --images-dir inside root, and the shipped data."""
    return [
        "--models-dir",
        root / "models",
        "--images-dir",
        root / "images",
        "--data-dir",
        DATA_DIR,
    ]


@contextmanager
def deadline(seconds: int, why: str = "it should have finished long before"):
    """Fail instead of hanging (a FIFO opened for reading, a huge value not refused early)."""

    def expire(signum, frame):  # pytest.fail: no `except OSError` or `except Exception` stops it
        pytest.fail(f"still running after {seconds} s: {why}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class QuietReporter:
    """A training reporter that watches silently; tests subclass it to act at a given moment."""

    def job_started(self, model_steps): ...
    def run_started(self, label, members, epochs, steps, first_epoch): ...
    def epoch_started(self, epoch, running_loss): ...
    def step_done(self): ...
    def testing(self): ...
    def epoch_finished(self, epoch, records, notes): ...


class Interrupter(QuietReporter):
    """Sends this process a signal once (Ctrl-C by default): in the first step (after=0) or
    when epoch `after` is finished. The trainer then stops at the next batch boundary."""

    def __init__(self, after: int = 1, number: int = signal.SIGINT):
        self.after, self.number, self.fired = after, number, False

    def step_done(self):
        if self.after == 0:
            self.fire()

    def epoch_finished(self, epoch, records, notes):
        if epoch == self.after:
            self.fire()

    def fire(self):
        if not self.fired:
            self.fired = True
            os.kill(os.getpid(), self.number)


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch):
    """Tests must not depend on the developer's shell."""
    for name in ("REGCLI_DATA_DIR", "REGCLI_DEBUG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def mnist():
    """(train, test) splits of the real MNIST files shipped in data/."""
    return load_split(DATA_DIR, "train"), load_split(DATA_DIR, "test")


@pytest.fixture(scope="session")
def quick_model(tmp_path_factory) -> Path:
    """A model directory trained once per session with QUICK_CONFIG (read-only for tests)."""
    root = tmp_path_factory.mktemp("quick")
    return train_model(QUICK_CONFIG, "quick", root / "models", root / "images")


@pytest.fixture(scope="session")
def exported(quick_model, tmp_path_factory) -> Path:
    """A copy of the quick model with its model.onnx (read-only for tests)."""
    from regcli.export import export_model

    model_dir = tmp_path_factory.mktemp("exported") / "quick"
    shutil.copytree(quick_model, model_dir)
    export_model(model_dir, data_dir=DATA_DIR)
    return model_dir


@pytest.fixture
def exported_copy(exported, tmp_path) -> Path:
    """A writable copy of the exported quick model."""
    model_dir = tmp_path / "copy"
    shutil.copytree(exported, model_dir)
    return model_dir
