import os
from pathlib import Path

import pytest

from regcli.config import TrainConfig
from regcli.data import load_split
from regcli.runs import train_and_save

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"

# One epoch on the first 10,000 training images: the quick, real model every inference test uses.
QUICK_CONFIG = TrainConfig(epochs=1, batch_size=64, lr=0.1, limit_train=10_000, limit_test=2_000)


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
    return train_and_save(QUICK_CONFIG, "quick", root / "models", root / "images", DATA_DIR)


def snapshot(folder: Path) -> dict:
    """Every file under folder with its bytes, to prove a failed command changed nothing."""
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


os.environ.setdefault("MPLBACKEND", "Agg")
