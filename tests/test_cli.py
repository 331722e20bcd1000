"""The command line as a user meets it: train writes every artifact, names and --force, --json,
summary, --version and REGCLI_DEBUG."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from regcli import __version__
from tests.conftest import (
    DATA_DIR,
    REPO,
    TINY,
    invoke,
    one_line_error,
    places,
    snapshot,
    train_cpu,
)


def test_train_writes_every_artifact_with_its_run_record(tmp_path):
    models, images = tmp_path / "models", tmp_path / "images"
    result = invoke(
        "train",
        "--l1",
        "1e-5",
        "--weight-decay",
        "1e-4",
        "--epochs",
        "2",
        "--limit-train",
        "1000",
        "--limit-test",
        "500",
        "--models-dir",
        models,
        "--images-dir",
        images,
        "--data-dir",
        DATA_DIR,
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    model_dir = models / "l1_l2"
    assert "epoch  2/2" in result.stderr  # one summary line per epoch, even without a TTY
    assert f"saved {model_dir}" in result.stderr and result.stdout == ""
    epochs = [line for line in result.stderr.splitlines() if line.startswith("  epoch ")]
    assert len(epochs) == 2 and all(len(line) <= 80 for line in epochs), epochs
    history = json.loads((model_dir / "metrics.json").read_text())["epochs"]
    best = max(history, key=lambda r: r["test_accuracy"])
    closing = f"test acc {100 * history[-1]['test_accuracy']:.2f}% (best "
    assert (
        closing + f"{100 * best['test_accuracy']:.2f}% in epoch {best['epoch']})" in result.stderr
    )
    assert f"wrote {images / 'l1_l2_history.png'}" in result.stderr
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    config = payload["config"]
    assert (config["l1"], config["weight_decay"], config["reg_scope"]) == (1e-5, 1e-4, "weights")
    assert config["seed"] == 3 and payload["epochs"] == 2 and payload["parameters"] < 10_000
    assert "mode" not in payload and "l1" not in payload  # the config is stored once
    assert payload["normalization"] == {"mean": 0.1307, "std": 0.3081, "inside_model": True}
    assert 0 < payload["final"]["test_accuracy"] <= payload["best"]["test_accuracy"] <= 1
    metrics = json.loads((model_dir / "metrics.json").read_text())
    run = metrics["run"]
    assert run == payload["run"] and metrics["status"] == "finished"
    assert run["command"][:3] == ["regcli", "train", "--l1"] and "--seed" in run["command"]
    assert run["started"] <= run["finished"] and run["finished"].endswith("Z")
    assert run["machine"]["cores"] == os.cpu_count() and run["machine"]["cpu"]
    assert run["versions"]["torch"] == torch.__version__ and run["versions"]["regcli"]
    assert run["code"]["git_commit"] and isinstance(run["code"]["dirty"], bool)
    assert run["group"] == {"size": 1, "index": 0, "members": ["l1_l2"]}
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2]
    assert metrics["config"]["limit_train"] == 1000
    csv_lines = (model_dir / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss,penalty") and len(csv_lines) == 3
    png = (images / "l1_l2_history.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".write-test*"))
    assert not list(tmp_path.rglob(".lock"))


def test_a_named_model_that_exists_needs_force(quick_model):
    models = quick_model.parent
    before = snapshot(models)
    result = invoke("train", "--name", "quick", "--models-dir", models, "--epochs", "1")
    one_line_error(result, 2, "pass --force to replace it")
    assert snapshot(models) == before


def test_train_json_prints_the_final_records(tmp_path):
    result = invoke(
        "train",
        *TINY,
        "--seeds",
        "2",
        *places(tmp_path),
        "--json",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["model"].rsplit("/", 2)[-2:] for r in records] == [
        ["none", "seed-0"],
        ["none", "seed-1"],
    ]
    assert all(r["action"] == "trained" and r["final"]["epoch"] == 1 for r in records)
    assert result.stderr == ""  # --quiet: no epoch lines, no "saved"


def test_summary_prints_the_layers_and_total():
    result = invoke("summary")
    assert result.exit_code == 0
    assert "global average pool" in result.stdout
    total = result.stdout.strip().splitlines()[-1]
    assert total.startswith("total") and int(total.split()[-1].replace(",", "")) == 8_986
    data = json.loads(invoke("summary", "--json").stdout)
    assert data["parameters"] == 8_986 and sum(r["parameters"] for r in data["layers"]) == 8_986


def test_version_and_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "regcli", "--version"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0 and done.stdout.strip() == f"regcli {__version__}"


def test_debug_shows_the_traceback(tmp_path):
    command = [sys.executable, "-m", "regcli", "evaluate", str(tmp_path / "nowhere")]
    quiet = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    loud = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "REGCLI_DEBUG": "1"}
    )
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert quiet.stderr.startswith("error: no regcli model at")
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "RegcliError" in loud.stderr


def test_bare_regcli_prints_help_and_no_error():
    done = subprocess.run(
        [sys.executable, "-m", "regcli"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0 and "error" not in done.stderr
    assert "Commands" in done.stdout + done.stderr and "sweep" in done.stdout + done.stderr


def test_help_shows_flags_as_flags():
    text = invoke("evaluate", "--help").stdout
    assert "--json" in text and "<bool>" not in text and "list[Path]" not in text
    assert "<torch|onnx>" in text


def test_shell_completion_is_on_and_completes_model_folders(monkeypatch):
    from regcli.cli.options import complete_models

    # typer detects the shell from the process tree, which a test run need not have: told not to
    # detect it, --show-completion takes the shell's name
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = subprocess.run(
        [str(Path(sys.executable).with_name("regcli")), "--show-completion", "bash"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    assert "complete -o default -F _regcli_completion regcli" in script
    monkeypatch.chdir(REPO)
    default = type("Context", (), {"params": {}})()  # no --models-dir given: models/
    assert "models/l1_l2" in complete_models(default, "models/l1")
    assert all(c.startswith("models/l1") for c in complete_models(default, "models/l1"))
    elsewhere = type("Context", (), {"params": {"models_dir": REPO / "models" / "sweep"}})()
    found = complete_models(elsewhere, "")
    assert len(found) == 70 and all("sweep" in c for c in found)


def test_print_config_then_config_repeats_the_settings(tmp_path):
    printed = invoke(
        "train", "--l1", "3e-5", "--momentum", "0.8", "--dropout", "0.1", "--print-config"
    )
    assert printed.exit_code == 0 and not (REPO / "models" / "l1-1").exists()
    run_toml = tmp_path / "run.toml"
    run_toml.write_text(printed.stdout)
    again = invoke("train", "--config", run_toml, "--print-config")
    assert again.stdout == printed.stdout
    # the command line wins over the file; untouched settings come from the file
    override = invoke("train", "--config", run_toml, "--l1", "1e-4", "--print-config").stdout
    assert "l1 = 0.0001" in override and "momentum = 0.8" in override
    trained = invoke(
        "train",
        "--config",
        run_toml,
        *TINY,
        *places(tmp_path),
        "--quiet",
    )
    assert trained.exit_code == 0, trained.output
    saved = json.loads((tmp_path / "models" / "l1" / "metrics.json").read_text())["config"]
    assert (saved["l1"], saved["momentum"], saved["dropout"], saved["epochs"]) == (
        3e-5,
        0.8,
        0.1,
        1,
    )
    # a saved model's folder repeats its settings
    repeated = invoke("train", "--config", tmp_path / "models" / "l1", "--print-config").stdout
    assert "limit_train = 256" in repeated and "momentum = 0.8" in repeated


def test_a_config_file_with_an_unknown_setting_is_refused(tmp_path):
    (tmp_path / "run.toml").write_text("lr = 0.1\nlearning_rate = 0.2\n")
    result = invoke("train", "--config", tmp_path / "run.toml", "--models-dir", tmp_path / "m")
    one_line_error(result, 2, "unknown setting 'learning_rate'")
    assert not (tmp_path / "m").exists()


def test_json_is_compact_a_confusion_matrix_row_per_line(exported):
    result = invoke("evaluate", exported, "--json", "--data-dir", DATA_DIR, "--quiet")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) < 40  # ten rows of the matrix, not a hundred numbers
    (entry,) = json.loads(result.stdout)
    assert sum(map(sum, entry["confusion"])) == 10_000


def test_training_progress_on_a_terminal(tmp_path, monkeypatch):
    """On a terminal: epoch k/N, images/s, running loss, time left, and the test pass labelled."""
    import regcli.cli.console as console
    from regcli.core.config import TrainConfig
    from regcli.jobs.runs import Request

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=160, highlight=False)
    monkeypatch.setattr(console, "stderr", terminal)
    seen = []

    class Watching(console.TrainingReporter):
        def step_done(self):
            super().step_done()
            seen.append(self.progress.tasks[0].fields["info"])

        def testing(self):
            super().testing()
            seen.append(str(self.progress.tasks[0].description))

    config = TrainConfig(epochs=2, limit_train=640, limit_test=128)
    with Watching() as reporter:
        train_cpu([Request(config, "watched")], tmp_path, reporter=reporter)
    assert any("img/s" in s and "loss" in s and "left" in s for s in seen)
    assert "watched epoch 2/2 testing" in seen
    shown = screen.getvalue()
    assert "watched: epochs 1-2" in shown and "  epoch  2/2  loss " in shown  # kept for logs


@pytest.mark.parametrize("command", ["evaluate", "export", "compare", "weights"])
def test_quiet_silences_progress_and_wrote_lines(exported_copy, tmp_path, command):
    extra = {
        "evaluate": ["--data-dir", DATA_DIR],
        "export": ["--data-dir", DATA_DIR],
        "compare": ["--images-dir", tmp_path],
        "weights": ["--images-dir", tmp_path],
    }
    result = invoke(command, exported_copy, *extra[command], "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_time_left_is_for_the_whole_job(tmp_path, monkeypatch):
    """Two models one after the other: the reporter is told the job's size up front, and every
    step of either model counts towards it."""
    import regcli.cli.console as console
    from regcli.core.config import TrainConfig
    from regcli.jobs.runs import Request

    monkeypatch.setattr(console, "stderr", Console(file=io.StringIO(), force_terminal=True))
    config = TrainConfig(epochs=2, limit_train=300, limit_test=128)  # 3 steps an epoch
    requests = [
        Request(TrainConfig(**{**config.as_dict(), "seed": k}), "g", seeded=True) for k in range(2)
    ]
    with console.TrainingReporter() as reporter:
        train_cpu(requests, tmp_path, reporter=reporter, group_size=1)
        assert reporter.job_total == 2 * 2 * 3 and reporter.job_done == reporter.job_total


def test_a_log_gets_a_progress_line_within_an_epoch(tmp_path, monkeypatch):
    """Without a terminal, a line every PERIODIC_SECONDS (here: every step) says where the epoch
    is, how fast, and the job's time left; each fits 80 columns."""
    monkeypatch.setattr("regcli.cli.console.PERIODIC_SECONDS", 0.0)
    args = ["train", "--name", "log", *TINY, "--batch-size", "64", *places(tmp_path)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    steps = [line for line in result.stderr.splitlines() if " step " in line]
    assert len(steps) == 4 and steps[0].startswith("  epoch  1/1  step 1/4  ")  # 256 / 64
    assert all("img/s" in line and line.endswith(" left") and len(line) <= 80 for line in steps)
    quiet = invoke(*args, "--name", "log2", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
