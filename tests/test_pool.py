"""Models side by side on a CPU (regcli/jobs/pool.py): the layout chosen, each member's numbers the
same as one after another, Ctrl-C across the processes, and a bad member failing alone."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from regcli.core.config import RunOptions, TrainConfig
from regcli.core.errors import Interrupted
from regcli.jobs.pool import MIN_POOL_STEPS, jobs_for
from regcli.jobs.runner import side_by_side
from regcli.jobs.runs import Request
from regcli.store.checkpoints import load_checkpoint
from regcli.store.layout import LAST_NAME
from tests.conftest import (
    REPO,
    TINY,
    Interrupter,
    invoke,
    places,
    train_cpu,
)
from tests.test_resume_signals import assert_complete_or_absent, history_without_time, wait_for


def test_on_a_cpu_groups_go_side_by_side_one_process_per_core(monkeypatch):
    monkeypatch.setattr("regcli.jobs.pool.usable_cores", lambda: 4)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert jobs_for(RunOptions(), groups=10) == 4  # one per core
    assert jobs_for(RunOptions(), groups=3) == 3  # never more than there are groups
    assert jobs_for(RunOptions(jobs=2), groups=10) == 2  # --jobs
    long, short = MIN_POOL_STEPS, MIN_POOL_STEPS - 1  # (model, step) pairs of the job
    assert side_by_side(cpu, RunOptions(), [[1], [2]], long)
    assert not side_by_side(cpu, RunOptions(), [[1], [2]], short)  # start-up would cost more
    assert side_by_side(cpu, RunOptions(jobs=2), [[1], [2]], short)  # unless asked for
    assert not side_by_side(cpu, RunOptions(), [[1]], long)  # one model: in this process
    assert not side_by_side(cpu, RunOptions(jobs=1), [[1], [2]], long)
    assert not side_by_side(cuda, RunOptions(), [[1], [2]], long)  # a GPU groups them instead
    assert not side_by_side(cuda, RunOptions(jobs=2), [[1], [2]], long)  # (REGCLI_JOBS, say)


def test_a_containers_cpu_quota_caps_the_processes(tmp_path, monkeypatch):
    from regcli.train import devices

    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(devices, "CPU_QUOTA", quota)
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda _: set(range(64)))
    quota.write_text("150000 100000\n")  # 1.5 CPUs: two processes
    assert devices.usable_cores() == 2
    quota.write_text("max 100000\n")
    assert devices.usable_cores() == 64
    quota.write_text("garbage")
    assert devices.usable_cores() == 64


def weights(model_dir):
    return load_checkpoint(model_dir)["state_dict"]


def test_side_by_side_each_member_ends_as_it_would_alone(tmp_path, monkeypatch):
    """Seeds 0 and 1 in two processes and in one: the same histories and the same weights;
    the log says each model's lines with its tag, a line per model within 80 columns."""
    monkeypatch.setattr("regcli.cli.console.PERIODIC_SECONDS", 0.0)  # a progress line every step
    common = ["train", "--seeds", "2", *TINY, "--epochs", "2", *places(tmp_path)]
    pair = invoke(*common, "--name", "pair", "--jobs", "2", "--threads", "1")
    assert pair.exit_code == 0, pair.output
    alone = invoke(*common, "--name", "alone", "--jobs", "1", "--threads", "1")
    assert alone.exit_code == 0, alone.output
    models = tmp_path / "models"
    for k in (0, 1):
        a, b = models / "pair" / f"seed-{k}", models / "alone" / f"seed-{k}"
        assert history_without_time(a) == history_without_time(b)
        assert all(torch.equal(v, weights(b)[name]) for name, v in weights(a).items())
    lines = pair.stderr.splitlines()
    for tag, seed in (("#1", 0), ("#2", 1)):
        assert f"{tag} pair/seed-{seed}: epochs 1-2 of 2 steps, one model" in lines
        assert any(line.startswith(f"{tag} epoch 2/2 loss ") for line in lines)
        steps = [line for line in lines if line.startswith(f"{tag} epoch") and " step " in line]
        assert steps and all("img/s" in line and "(job " in line for line in steps)
    assert all(len(line) <= 80 for line in lines if line.startswith("#") and " epoch " in line)
    assert "saved models/pair/seed-1" in pair.stderr.replace(str(tmp_path) + "/", "")


def test_ctrl_c_stops_every_process_and_says_how_to_continue(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: every member stops at a batch
    boundary, each last.pt whole, and the same command continues."""
    command = [sys.executable, "-m", "regcli", "train", "--name", "g", "--seeds", "2"]
    command += [
        "--jobs",
        "2",
        "--threads",
        "1",
        "--epochs",
        "500",
        "--limit-train",
        "512",
        "--limit-test",
        "128",
    ]
    command += ["--device", "cpu", *map(str, places(tmp_path))]
    process = subprocess.Popen(
        command, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    group = tmp_path / "models" / "g"
    for k in (0, 1):
        wait_for(group / f"seed-{k}" / LAST_NAME, process)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process of the job
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert (
        last.startswith("interrupted: stopped at a batch boundary; ") and "Traceback" not in stderr
    )
    for k in (0, 1):
        assert f"g/seed-{k}: epoch " in last
        assert_complete_or_absent(group / f"seed-{k}")
        assert not (group / f"seed-{k}" / "model.pt").exists()
    hint = last.split("continue with: ")[1]
    assert hint.startswith("regcli train --name g --seeds 2 --jobs 2")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_bad_member_fails_alone(tmp_path, jobs):
    """Seed 1 was interrupted on two threads, so it cannot continue on one: it fails with its
    own error line, seed 0 is trained all the same, and seed 1's last.pt is untouched."""
    models = tmp_path / "models"
    config = TrainConfig(epochs=2, limit_train=256, limit_test=128, seed=1)
    with pytest.raises(Interrupted):
        request = Request(config, "g", seeded=True)
        train_cpu([request], models, reporter=Interrupter(1), threads=2)
    last = models / "g" / "seed-1" / LAST_NAME
    before = last.read_bytes()
    args = ["train", "--name", "g", "--seeds", "2", *TINY, "--epochs", "2", *places(tmp_path)]
    result = invoke(*args, "--jobs", jobs, "--threads", "1")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "g/seed-1 was started on 2 CPU thread(s)" in errors[0]
    assert "--threads 2" in errors[0]
    assert (models / "g" / "seed-0" / "model.pt").is_file()
    assert last.read_bytes() == before and not (models / "g" / "seed-1" / "model.pt").exists()


def test_on_a_terminal_each_running_model_has_its_bar_and_the_job_one(monkeypatch):
    """Two groups side by side: a bar per model (its epoch, img/s, time left) and the job's
    bar with the whole job's time left; a model's bar goes when it ends."""
    import io

    from rich.console import Console

    import regcli.cli.console as console

    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    monkeypatch.setattr(console, "stderr", terminal)
    with console.TrainingReporter() as reporter:
        reporter.job_started(2 * 2 * 3)  # 2 models, 2 epochs of 3 steps
        lanes = [reporter.member(0), reporter.member(1)]
        for k, lane in enumerate(lanes):
            lane.run_started(f"g/seed-{k}", 1, 2, 3, 1)
            lane.epoch_started(1, lambda: 0.5)
            lane.step_done()
        bars = {str(t.description): t.fields["info"] for t in reporter.progress.tasks}
        assert set(bars) == {"job", "#1 g/seed-0 epoch 1/2", "#2 g/seed-1 epoch 1/2"}
        assert all("img/s" in bars[d] and "left" in bars[d] for d in bars if d != "job")
        assert bars["job"].endswith(" left") and reporter.job_done == 2
        lanes[0].finished()
        assert {str(t.description) for t in reporter.progress.tasks} == {
            "job",
            "#2 g/seed-1 epoch 1/2",
        }


def test_a_dry_run_says_how_many_processes_share_the_work(tmp_path):
    args = ["sweep", "--dry-run", "--l1", "0,1e-5", "--weight-decay", "0", "--seeds", "2"]
    result = invoke(*args, "--device", "cpu", "--jobs", "2", *places(tmp_path))
    assert result.exit_code == 0, result.output
    assert "from start to end in 2 processes side by side" in result.stdout
    alone = invoke(*args, "--device", "cpu", "--jobs", "1", *places(tmp_path))
    assert alone.exit_code == 0, alone.output
    assert "to train; about" in alone.stdout and "side by side" not in alone.stdout


def test_the_same_variants_command_continues_instead_of_starting_over(tmp_path):
    """`make all-variants` run again: --variants reuses what is finished (no --force needed,
    none given), and an interrupted variant would be resumed, like --seeds."""
    args = ["train", "--variants", "none,l1", "--l1", "1e-5", *TINY, *places(tmp_path)]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "reusing" in again.stderr and "saved" not in again.stderr
    changed = invoke(*args, "--epochs", "2")  # other settings: refused, not replaced
    assert changed.exit_code == 2 and "pass --force to replace it" in changed.stderr
