"""What every test file shares: real MNIST, one quick real model (and its ONNX export), a CLI
runner, a snapshot of a folder's files, and the check that an error is one clean line."""

import os
import shutil
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


def train_model(config: TrainConfig, name: str, models: Path, images: Path | None = None) -> Path:
    """Train one model through the same path as `regcli train` (on the CPU)."""
    (outcome,) = train_job(
        [Request(config, name)],
        models_dir=models,
        images_dir=images,
        data_dir=DATA_DIR,
        auto_name=False,
        force=False,
        resume=False,
        device_name="cpu",
    )
    return outcome.model_dir


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
    export_model(model_dir, DATA_DIR)
    return model_dir


@pytest.fixture
def exported_copy(exported, tmp_path) -> Path:
    """A writable copy of the exported quick model."""
    model_dir = tmp_path / "copy"
    shutil.copytree(exported, model_dir)
    return model_dir
