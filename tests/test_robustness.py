"""Interruption, resume, divergence, concurrent runs, and every bad input: one line, no damage."""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from regcli.checkpoints import load_checkpoint
from regcli.cli import app
from regcli.config import TrainConfig
from regcli.errors import Interrupted
from regcli.runs import LAST_NAME, train_and_save
from tests.conftest import DATA_DIR, REPO, snapshot

runner = CliRunner()
SMALL = ["--limit-train", "512", "--limit-test", "256", "--device", "cpu", "--data-dir", DATA_DIR]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def history_without_time(model_dir):
    epochs = json.loads((model_dir / "metrics.json").read_text())["epochs"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in epochs]


class SignalAfterEpoch:
    """A reporter that sends this process a signal once `epoch` is finished."""

    def __init__(self, epoch, number=signal.SIGINT):
        self.epoch, self.number = epoch, number

    def epoch_started(self, epoch, steps): ...
    def step_done(self): ...

    def epoch_finished(self, record, epochs):
        if record.epoch == self.epoch:
            os.kill(os.getpid(), self.number)


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    config = TrainConfig(epochs=3, limit_train=512, limit_test=256, l1=1e-4)
    models, images = tmp_path / "models", tmp_path / "images"
    straight = train_and_save(config, "straight", models, images, DATA_DIR, "cpu")

    with pytest.raises(Interrupted) as stopped:
        train_and_save(config, "resumed", models, images, DATA_DIR, "cpu", SignalAfterEpoch(1))
    assert stopped.value.exit_code == 130
    assert "epoch 1/3 is saved" in str(stopped.value)
    resumed_dir = models / "resumed"
    assert not (resumed_dir / "model.pt").exists() and (resumed_dir / LAST_NAME).is_file()
    train_and_save(config, "resumed", models, images, DATA_DIR, "cpu", resume=True)
    assert history_without_time(resumed_dir) == history_without_time(straight)
    assert not (resumed_dir / LAST_NAME).exists()
    ours, theirs = load_checkpoint(resumed_dir), load_checkpoint(straight)
    assert all(torch.equal(ours["state_dict"][k], v) for k, v in theirs["state_dict"].items())


def start_training(tmp_path, name, epochs=40, wrapper=None):
    command = [
        sys.executable,
        "-m",
        "regcli",
        "train",
        "--name",
        name,
        "--epochs",
        str(epochs),
        "--models-dir",
        str(tmp_path / "models"),
        "--images-dir",
        str(tmp_path / "images"),
        *map(str, SMALL),
    ]
    if wrapper:
        command = [sys.executable, "-c", wrapper, *command[3:]]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path, process, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def assert_complete_or_absent(model_dir):
    """Every file is whole and loads; only hidden temporaries of a killed write may be extra."""
    for path in model_dir.iterdir():
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        if path.suffix == ".pt":
            assert isinstance(torch.load(path, weights_only=True), dict)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def test_sigterm_stops_at_a_batch_boundary_and_says_how_to_resume(tmp_path):
    process = start_training(tmp_path, "term")
    wait_for(tmp_path / "models" / "term" / LAST_NAME, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: stopped in epoch") and "--resume" in last
    assert "Traceback" not in stderr
    assert_complete_or_absent(tmp_path / "models" / "term")


def test_sigkill_mid_epoch_then_resume_finishes(tmp_path):
    model_dir = tmp_path / "models" / "killed"
    process = start_training(tmp_path, "killed", epochs=6)
    wait_for(model_dir / LAST_NAME, process)
    time.sleep(0.3)  # well inside the next epoch
    process.kill()
    process.wait()
    assert_complete_or_absent(model_dir)
    assert not (model_dir / "model.pt").exists()
    result = invoke(
        "train",
        "--name",
        "killed",
        "--epochs",
        "6",
        "--models-dir",
        tmp_path / "models",
        "--images-dir",
        tmp_path / "images",
        *SMALL,
        "--resume",
    )
    assert result.exit_code == 0, result.output
    assert load_checkpoint(model_dir)["epochs"] == 6
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "metrics.csv",
        "metrics.json",
        "model.pt",
    ]


# Runs regcli with the final rename of model.pt held back: the file is written and the process
# is killed in the middle of saving it.
SLOW_SAVE = """
import os, sys, time
import regcli.artifacts as artifacts
real_replace = os.replace
def held_replace(source, target):
    if str(target).endswith("model.pt"):
        open(str(target) + ".saving", "w").close()
        time.sleep(60)
    real_replace(source, target)
artifacts.os.replace = held_replace
sys.argv = ["regcli"] + sys.argv[1:]
from regcli.cli import main
main()
"""


def test_sigkill_mid_save_leaves_no_partial_model(tmp_path):
    model_dir = tmp_path / "models" / "saving"
    process = start_training(tmp_path, "saving", epochs=2, wrapper=SLOW_SAVE)
    wait_for(model_dir / "model.pt.saving", process)
    process.kill()
    process.wait()
    (model_dir / "model.pt.saving").unlink()
    assert not (model_dir / "model.pt").exists()
    assert list(model_dir.glob(".model.pt.*.tmp"))  # the unfinished write, under another name
    assert_complete_or_absent(model_dir)
    assert len(torch.load(model_dir / LAST_NAME, weights_only=True)["history"]) == 2
    result = invoke(
        "train",
        "--name",
        "saving",
        "--epochs",
        "2",
        "--models-dir",
        tmp_path / "models",
        "--images-dir",
        tmp_path / "images",
        *SMALL,
        "--resume",
    )
    assert result.exit_code == 0, result.output
    assert load_checkpoint(model_dir)["epochs"] == 2
    assert not list(model_dir.glob(".*"))


def test_two_runs_at_once_both_finish_intact(tmp_path):
    processes = [start_training(tmp_path, name, epochs=2) for name in ("left", "right")]
    for process in processes:
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr
    for name in ("left", "right"):
        payload = load_checkpoint(tmp_path / "models" / name)
        assert payload["epochs"] == 2
        assert (tmp_path / "images" / f"{name}_history.png").stat().st_size > 10_000
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("option", [["--lr", "50"], ["--l1", "10"]])
def test_divergence_stops_with_a_hint(tmp_path, option):
    result = invoke(
        "train",
        *option,
        "--epochs",
        "3",
        "--models-dir",
        tmp_path / "models",
        "--images-dir",
        tmp_path / "images",
        *SMALL,
    )
    assert result.exit_code == 1
    *epochs, line = result.stderr.strip().splitlines()
    assert all(" epoch " in e for e in epochs)  # the summaries of the good epochs
    assert line.startswith(f"error: training diverged in epoch {len(epochs) + 1} at batch")
    assert "smaller" in line and "Traceback" not in result.output
    assert not (tmp_path / "models" / "none" / "model.pt").exists()


def test_existing_interrupted_run_needs_resume_or_force(tmp_path):
    config = TrainConfig(epochs=3, limit_train=256, limit_test=128)
    models = tmp_path / "models"
    with pytest.raises(Interrupted):
        train_and_save(config, "x", models, tmp_path / "i", DATA_DIR, "cpu", SignalAfterEpoch(1))
    before = snapshot(models)
    for extra, message in [
        ([], "--resume"),
        (["--resume", "--lr", "0.3"], "lr 0.3"),
        (["--force", "--resume"], "contradict"),
    ]:
        result = invoke(
            "train",
            "--name",
            "x",
            "--epochs",
            "3",
            "--limit-train",
            "256",
            "--limit-test",
            "128",
            "--models-dir",
            models,
            *extra,
        )
        assert result.exit_code == 2 and message in result.stderr
    assert snapshot(models) == before


class MaliciousPickle:
    def __reduce__(self):
        return (os.system, ("touch /tmp/regcli-pwned",))


def write_checkpoint_file(kind):
    def make(model_dir):
        model_dir.mkdir(parents=True, exist_ok=True)
        path = model_dir / "model.pt"
        if kind == "corrupt":
            path.write_bytes(b"PK\x03\x04 broken zip")
        elif kind == "foreign":
            torch.save({"weights": torch.zeros(3)}, path)
        elif kind == "malicious":
            torch.save({"format": "regcli-checkpoint", "evil": MaliciousPickle()}, path)
        elif kind == "plain-pickle":
            path.write_bytes(pickle.dumps(MaliciousPickle()))

    return make


def no_space_left(monkeypatch):
    real_fdopen = os.fdopen

    def full_disk(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)

        def write(_data):
            raise OSError(errno.ENOSPC, "No space left on device")

        handle.write = write
        return handle

    monkeypatch.setattr("regcli.artifacts.os.fdopen", full_disk)


@pytest.mark.parametrize(
    "case, setup, args, exit_code, message",
    [
        ("model path missing", None, ["evaluate", "{tmp}/nope"], 1, "no regcli model"),
        (
            "directory without a model",
            lambda d: d.mkdir(parents=True),
            ["evaluate", "{model}"],
            1,
            "no regcli model",
        ),
        (
            "corrupt checkpoint",
            write_checkpoint_file("corrupt"),
            ["evaluate", "{model}"],
            1,
            "not a readable regcli checkpoint",
        ),
        (
            "not a regcli checkpoint",
            write_checkpoint_file("foreign"),
            ["evaluate", "{model}"],
            1,
            "not a regcli checkpoint",
        ),
        (
            "malicious pickle in a checkpoint",
            write_checkpoint_file("malicious"),
            ["evaluate", "{model}"],
            1,
            "not a readable regcli checkpoint",
        ),
        (
            "plain malicious pickle",
            write_checkpoint_file("plain-pickle"),
            ["evaluate", "{model}"],
            1,
            "not a readable regcli checkpoint",
        ),
        (
            "output directory not writable",
            lambda d: d.parent.mkdir(parents=True),
            ["train", "--models-dir", "{tmp}/file/models", "--epochs", "1", *SMALL],
            1,
            "cannot write",
        ),
        ("negative batch size", None, ["train", "--batch-size", "0"], 2, "--batch-size"),
        ("non-numeric epochs", None, ["train", "--epochs", "many"], 2, "--epochs"),
        ("unknown backend", None, ["evaluate", "--backend", "tensorflow"], 2, "--backend"),
        (
            "--out for several models",
            None,
            ["misclassified", "{model}", "{model}", "--out", "{tmp}/x.png"],
            1,
            "no regcli model",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_table(tmp_path, case, setup, args, exit_code, message):
    model_dir = tmp_path / "models" / "m"
    if setup:
        setup(model_dir)
    (tmp_path / "file").write_text("a file, not a folder")
    before = snapshot(tmp_path)
    result = invoke(*[str(a).format(tmp=tmp_path, model=model_dir) for a in args])
    assert result.exit_code == exit_code, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before
    assert not os.path.exists("/tmp/regcli-pwned")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) // 2], "cannot read"),  # truncated gzip
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "cannot read"),  # bad gzip checksum
    ],
)
def test_damaged_data_directory(tmp_path, damage, message):
    raw_dir = tmp_path / "data" / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for source in (DATA_DIR / "MNIST" / "raw").glob("*.gz"):
        (raw_dir / source.name).write_bytes(source.read_bytes())
    target = raw_dir / "train-labels-idx1-ubyte.gz"
    target.write_bytes(damage(target.read_bytes()))
    before = snapshot(tmp_path)
    result = invoke(
        "train", "--data-dir", tmp_path / "data", "--models-dir", tmp_path / "m", "--epochs", "1"
    )
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and "train-labels" in line
    assert snapshot(tmp_path) == before


def test_disk_full_keeps_the_previous_file(exported_copy, monkeypatch):
    onnx_before = (exported_copy / "model.onnx").read_bytes()
    no_space_left(monkeypatch)
    result = invoke("export", exported_copy, "--force", "--data-dir", DATA_DIR)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "No space left on device" in line and "model.onnx" in line
    assert (exported_copy / "model.onnx").read_bytes() == onnx_before
    assert not list(exported_copy.glob(".*.tmp"))


@pytest.fixture
def exported_copy(quick_model, tmp_path):
    import shutil

    from regcli.export import export

    model_dir = tmp_path / "copy"
    shutil.copytree(quick_model, model_dir)
    export(model_dir, DATA_DIR)
    return model_dir


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_but_not_available(tmp_path):
    result = invoke(
        "train", "--device", "cuda", "--models-dir", tmp_path / "models", "--epochs", "1"
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: device 'cuda' was asked for but is not available here"
    assert not (tmp_path / "models").exists()
