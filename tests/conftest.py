"""What every test file shares: real MNIST, one quick real model (and its ONNX export), a CLI
runner, a snapshot of a folder's files, and the check that an error is one clean line."""

import json
import os
import shutil
import signal
import stat
import traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from regcli.cli import app
from regcli.core.config import Existing, RunOptions, TrainConfig
from regcli.core.events import Reporter
from regcli.data.mnist import load_split
from regcli.jobs.runner import train_job
from regcli.jobs.runs import Request
from regcli.train.devices import usable_cores

os.environ.setdefault("MPLBACKEND", "Agg")
# The suite trains on every core in one process (REGCLI_THREADS, REGCLI_JOBS: quicker for these
# tiny runs), but for the tests of the default layout, which pass --jobs and --threads; a test
# that calls the trainer directly runs on as many threads, so that numbers compare bit for bit.
SUITE_THREADS = usable_cores()
torch.set_num_threads(SUITE_THREADS)
pytest_plugins = ["tests.predict_support"]  # the predict tests' fixtures

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


BIG = 16 * 2**20  # bytes: a larger file (a sparse one, say) is described, not read


def state(path: Path):
    """What a snapshot records of one entry: a file's bytes (a big file's size and time), a
    link's target, a special file's kind; never following a link or reading a FIFO."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return ("link", os.readlink(path))
    if not stat.S_ISREG(info.st_mode):
        return ("special", stat.S_IFMT(info.st_mode))
    if info.st_size > BIG:
        return ("big", info.st_size, info.st_mtime_ns)
    return path.read_bytes()


def snapshot(folder: Path) -> dict:
    """Every file under folder with its bytes (and every link and special file as such), to
    prove a failed command changed nothing."""
    entries = sorted(Path(folder).rglob("*"))
    return {p: state(p) for p in entries if os.path.islink(p) or not p.is_dir()}


def tree(folder: Path) -> dict:
    """Every file under folder with its bytes, and every folder (as None)."""
    entries = Path(folder).rglob("*")
    folders = {p: None for p in entries if p.is_dir() and not os.path.islink(p)}
    return {**snapshot(folder), **folders}


def changes(before: dict, after: dict) -> list[str]:
    """What a command did to a tree, for a readable assertion message."""
    return [
        *(f"new {p}" for p in after if p not in before),
        *(f"gone {p}" for p in before if p not in after),
        *(f"changed {p}" for p in before if p in after and before[p] != after[p]),
    ]


def no_traceback(result) -> None:
    """The command ended by itself (exit code), not by an exception a user sees as a traceback;
    the assertion shows where it was raised."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        frames = traceback.format_exception(*result.exc_info)
        raise AssertionError("a traceback for the user:\n" + "".join(frames[-6:]))


def fails_cleanly(result, code: int, fragments: list[str], before: dict, root: Path) -> str:
    """One line, the fragments in it, no traceback, never torch's unpickling advice, and nothing
    under root changed, added or removed."""
    no_traceback(result)
    line = one_line_error(result, code, fragments[0])
    for fragment in fragments[1:]:
        assert fragment in line, (fragment, line)
    assert "weights_only" not in result.output, line
    assert not changes(before, tree(root)), changes(before, tree(root))
    return line


def copy_model(source: Path, models: Path, name: str = "quick") -> Path:
    """A writable copy of a read-only session model, as models/<name>/."""
    target = models / name
    shutil.copytree(source, target)
    return target


def edit_checkpoint(name: str, change):
    """A damage: load a model folder's model.pt or last.pt as plain data, change it in place
    (what `change` returns is ignored), save it back with torch.save (as a forger would)."""

    def damage(model_dir: Path) -> None:
        import torch

        payload = torch.load(Path(model_dir) / name, weights_only=True)
        change(payload)
        torch.save(payload, Path(model_dir) / name)

    return damage


def relabel(model_dir: Path, **settings) -> None:
    """A forger's edit: the config in both model.pt and metrics.json."""
    edit_checkpoint("model.pt", lambda p: p.update(config={**p["config"], **settings}))(model_dir)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    metrics["config"] = {**metrics["config"], **settings}
    (model_dir / "metrics.json").write_text(json.dumps(metrics))


def train_cpu(requests: list[Request], models: Path, *, reporter=None, existing=None, **options):
    """`regcli train`'s own path on the CPU: named folders, nothing forced (seeds reuse and
    resume), no figures, unless options (or `existing`: an Existing) say otherwise."""
    seeded = any(r.seeded for r in requests)
    existing = existing or (Existing.reuse if seeded else Existing.fail)
    if "command" in options:
        options["command"] = tuple(options["command"])
    settings = dict(models_dir=models, images_dir=None, data_dir=DATA_DIR, device="cpu", jobs=1)
    settings["threads"] = SUITE_THREADS
    run = RunOptions(**{**settings, **options, "existing": existing})
    return train_job(requests, run, reporter or Reporter())


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


class QuietReporter(Reporter):
    """A reporter that watches silently; tests subclass it to act at a given moment."""


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
    """Tests must not depend on the developer's shell; they train as SUITE_THREADS says."""
    for name in ("REGCLI_DATA_DIR", "REGCLI_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGCLI_JOBS", "1")
    monkeypatch.setenv("REGCLI_THREADS", str(SUITE_THREADS))


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
    from regcli.inference.export import export_model

    model_dir = tmp_path_factory.mktemp("exported") / "quick"
    shutil.copytree(quick_model, model_dir)
    export_model(model_dir, data_dir=DATA_DIR)
    return model_dir


@pytest.fixture(scope="session")
def tiny_group(tmp_path_factory) -> Path:
    """A real seed group: grp/seed-0 and grp/seed-1, two tiny runs, exported (read-only)."""
    from regcli.inference.export import export_model

    models = tmp_path_factory.mktemp("group") / "models"
    config = TrainConfig(epochs=1, limit_train=256, limit_test=128, l1=1e-5, weight_decay=1e-4)
    requests = [Request(replace(config, seed=k), "grp", seeded=True) for k in (0, 1)]
    for outcome in train_cpu(requests, models):
        export_model(outcome.model_dir, data_dir=DATA_DIR)
    return models / "grp"


RESUMABLE = TrainConfig(epochs=2, limit_train=256, limit_test=128)
RESUME_OPTIONS = ["--epochs", "2", "--limit-train", "256", "--limit-test", "128", "--device", "cpu"]


@pytest.fixture(scope="session")
def interrupted(tmp_path_factory) -> Path:
    """A real run stopped after its first of two epochs: models/run/last.pt (read-only)."""
    from regcli.core.errors import Interrupted
    from regcli.train.trainer import GroupTrainer

    original = GroupTrainer.train_epoch

    def stop_in_epoch_two(self, epoch, reporter=None, stop=None):
        if epoch == 2:
            raise Interrupted("stopped by SIGTERM", signal.SIGTERM)
        return original(self, epoch, reporter, stop)

    models = tmp_path_factory.mktemp("interrupted") / "models"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GroupTrainer, "train_epoch", stop_in_epoch_two)
        with pytest.raises(Interrupted):
            train_model(RESUMABLE, "run", models)
    assert (models / "run" / "last.pt").is_file() and not (models / "run" / "model.pt").exists()
    return models / "run"


def resume(tmp_path: Path):
    return invoke(
        "train",
        "--name",
        "run",
        "--resume",
        *RESUME_OPTIONS,
        *places(tmp_path),
        "--quiet",
    )


@pytest.fixture
def exported_copy(exported, tmp_path) -> Path:
    """A writable copy of the exported quick model."""
    model_dir = tmp_path / "copy"
    shutil.copytree(exported, model_dir)
    return model_dir
