"""Interruption, resume, divergence and concurrent runs: every file whole, every run continuable."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from regcli.core.config import Existing, TrainConfig
from regcli.core.errors import Interrupted
from regcli.jobs.runs import Request
from regcli.store.checkpoints import load_checkpoint
from regcli.store.layout import LAST_NAME
from tests.conftest import (
    DATA_DIR,
    REPO,
    RESUMABLE,
    RESUME_OPTIONS,
    TINY,
    Interrupter,
    invoke,
    one_line_error,
    places,
    snapshot,
    train_cpu,
)

SMALL = ["--limit-train", "512", "--limit-test", "256", "--device", "cpu", "--data-dir", DATA_DIR]


def history_without_time(model_dir):
    epochs = json.loads((model_dir / "metrics.json").read_text())["epochs"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in epochs]


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(epochs=3, limit_train=512, limit_test=256, l1=1e-4),
        # a class-balanced subset, a validation split, three passes an epoch
        TrainConfig(epochs=3, train_size=200, val_size=100, min_steps=18, limit_test=256),
    ],
    ids=["first-images", "subset-passes"],
)
def test_resumed_run_ends_exactly_like_an_uninterrupted_one(config, tmp_path):
    models = tmp_path / "models"
    (straight,) = train_cpu([Request(config, "straight")], models)
    with pytest.raises(Interrupted) as stopped:
        train_cpu([Request(config, "resumed")], models, reporter=Interrupter(1))
    assert stopped.value.exit_code == 130
    assert "epoch 1/3 is saved" in str(stopped.value)
    resumed_dir = models / "resumed"
    assert not (resumed_dir / "model.pt").exists() and (resumed_dir / LAST_NAME).is_file()
    train_cpu([Request(config, "resumed")], models, existing=Existing.resume)
    assert history_without_time(resumed_dir) == history_without_time(straight.model_dir)
    assert not (resumed_dir / LAST_NAME).exists()
    ours, theirs = load_checkpoint(resumed_dir), load_checkpoint(straight.model_dir)
    assert all(torch.equal(ours["state_dict"][k], v) for k, v in theirs["state_dict"].items())


def test_a_group_resumes_as_the_same_group_and_ends_as_if_never_stopped(tmp_path):
    config = TrainConfig(epochs=2, limit_train=384, limit_test=128, l1=1e-4)
    seeds = [
        Request(TrainConfig(**{**config.as_dict(), "seed": k}), "g", seeded=True) for k in range(2)
    ]
    straight = train_cpu(seeds, tmp_path / "a", group_size=2)
    with pytest.raises(Interrupted):
        train_cpu(seeds, tmp_path / "b", group_size=2, reporter=Interrupter(1))
    last = torch.load(tmp_path / "b" / "g" / "seed-1" / LAST_NAME, weights_only=True)
    assert last["group"] == {"size": 2, "index": 1, "members": ["g/seed-0", "g/seed-1"]}
    again = train_cpu(seeds, tmp_path / "b", group_size=2)  # seeds resume by themselves
    assert [o.action for o in again] == ["resumed", "resumed"]
    for a, b in zip(straight, again, strict=True):
        assert history_without_time(a.model_dir) == history_without_time(b.model_dir)
    # resuming needs the same members: one seed alone is refused
    with pytest.raises(Interrupted):
        train_cpu(seeds, tmp_path / "c", group_size=2, reporter=Interrupter(1))
    result = invoke(
        "train",
        "--name",
        "g",
        "--seeds",
        "1",
        "--group-size",
        "1",
        "--epochs",
        "2",
        "--limit-train",
        "384",
        "--limit-test",
        "128",
        "--l1",
        "1e-4",
        "--models-dir",
        tmp_path / "c",
        "--device",
        "cpu",
    )
    one_line_error(result, 2, "together with g/seed-1")


def start_training(tmp_path, name, epochs=40, wrapper=None, extra=()):
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
        *extra,
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
        if path.name.startswith("."):
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
    assert last.startswith("interrupted: stopped in epoch") and "Traceback" not in stderr
    hint = last.split("resume with: ")[1]
    assert hint.startswith("regcli train --name term") and hint.endswith(" --resume")
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
    result = resume_small(tmp_path, "killed", 6)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(model_dir)["epochs"] == 6
    # the OS dropped the killed process's lock; nothing of it is left once the run is done
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "metrics.csv",
        "metrics.json",
        "model.pt",
    ]


# Runs regcli with the final rename of model.pt held back: the file is written and the process
# is killed in the middle of saving it.
SLOW_SAVE = """
import os, sys, time
import regcli.core.files as artifacts
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
    result = resume_small(tmp_path, "saving", 2)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(model_dir)["epochs"] == 2
    assert not list(model_dir.glob(".*"))  # the stale temporary is cleaned up, no lock left


def resume_small(tmp_path: Path, name: str, epochs: int):
    """`regcli train --resume` of a SMALL run of this many epochs, in-process."""
    args = ["train", "--name", name, "--epochs", str(epochs), *places(tmp_path)[:4], *SMALL]
    return invoke(*args, "--resume")


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


def test_a_diverging_run_is_recorded_and_exits_1(tmp_path):
    models = tmp_path / "models"
    result = invoke(
        "train",
        "--lr",
        "1e5",
        "--epochs",
        "3",
        "--models-dir",
        models,
        "--images-dir",
        tmp_path / "images",
        *SMALL,
    )
    line = one_line_error(result, 1, "training diverged in epoch 1 at batch")
    assert "smaller --lr" in line and str(models / "none") in line
    metrics = json.loads((models / "none" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["diverged"]["epoch"] == 1
    assert not (models / "none" / "model.pt").exists()
    assert not (models / "none" / LAST_NAME).exists()
    listing = json.loads(invoke("runs", "--models-dir", models, "--json").stdout)
    assert [r["state"] for r in listing] == ["diverged"]


def test_existing_interrupted_run_needs_resume_or_force(tmp_path):
    config = TrainConfig(epochs=3, limit_train=256, limit_test=128)
    models = tmp_path / "models"
    with pytest.raises(Interrupted):
        train_cpu([Request(config, "x")], models, reporter=Interrupter(1))
    before = snapshot(models)
    options = [
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
        "--device",
        "cpu",
    ]
    for extra, message in [
        ([], "--resume"),
        (["--resume", "--lr", "0.3"], "lr 0.1 (asked 0.3)"),
        (["--force", "--resume"], "contradict"),
    ]:
        one_line_error(invoke("train", *options, *extra), 2, message)
    assert snapshot(models) == before


def test_interrupted_before_any_epoch_the_hint_starts_again(tmp_path):
    """With no finished epoch there is nothing to resume: the hint is the plain command."""

    models = tmp_path / "models"
    with pytest.raises(Interrupted) as stopped:
        train_cpu(
            [Request(TrainConfig(epochs=2, limit_train=256, limit_test=128), "early")],
            models,
            reporter=Interrupter(0),
        )
    assert "no epoch was completed" in str(stopped.value)
    assert not (models / "early").exists()  # nothing to keep: no empty folder either
    command = ["train", "--name", "early", *TINY, *places(tmp_path)]
    assert invoke(*command).exit_code == 0


def test_a_resumed_runs_record_keeps_its_first_command_and_all_its_time(tmp_path):
    models = tmp_path / "models"
    with pytest.raises(Interrupted):
        train_cpu(
            [Request(RESUMABLE, "r")],
            models,
            reporter=Interrupter(1),
            command=["regcli", "train", "first"],
        )
    first = torch.load(models / "r" / LAST_NAME, weights_only=True)["run"]
    options = ["--name", "r", *RESUME_OPTIONS, *places(tmp_path), "--quiet"]
    assert invoke("train", *options, "--resume").exit_code == 0
    run = json.loads((models / "r" / "metrics.json").read_text())["run"]
    assert run["command"] == ["regcli", "train", "first"] and run["started"] == first["started"]
    assert run["resumed_by"][0][:2] == ["regcli", "train"] and "--resume" in run["resumed_by"][0]
    assert run["seconds"] > first["seconds"] > 0


def test_a_run_resumes_only_where_it_can_continue_as_it_began(tmp_path):
    from regcli.core.errors import RegcliWarning, UsageError
    from regcli.jobs.runs import check_resumable

    cpu = {"device": "cpu", "deterministic": True, "threads": 1}
    check_resumable(tmp_path, dict(cpu), cpu)
    with pytest.warns(RegcliWarning, match="before regcli recorded its thread count"):
        check_resumable(tmp_path, {"device": "cpu", "deterministic": True}, cpu)  # older records
    for started in ({"device": "cuda", "deterministic": True}, {"device": "mps"}):
        with pytest.raises(UsageError, match="--force to start over"):
            check_resumable(tmp_path, started, cpu)
    with pytest.raises(UsageError, match="--no-deterministic"):
        check_resumable(
            tmp_path,
            {"device": "cuda", "deterministic": False},
            {"device": "cuda", "deterministic": True},
        )
    # on a CPU the thread count is part of how a run began
    with pytest.raises(UsageError, match="resume it with --threads 2"):
        check_resumable(tmp_path, {**cpu, "threads": 2}, cpu)
