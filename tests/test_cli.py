import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from regcli import __version__
from regcli.checkpoints import load_checkpoint
from regcli.cli import app
from tests.conftest import DATA_DIR, REPO, snapshot

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_writes_every_artifact(tmp_path):
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
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    assert payload["mode"] == "l1_l2" and payload["l1"] == 1e-5
    assert payload["weight_decay"] == 1e-4 and payload["reg_scope"] == "weights"
    assert payload["seed"] == 3 and payload["epochs"] == 2 and payload["parameters"] < 10_000
    assert payload["normalization"] == {"mean": 0.1307, "std": 0.3081, "inside_model": True}
    assert payload["versions"]["torch"] == torch.__version__
    assert 0 < payload["final"]["test_accuracy"] <= payload["best"]["test_accuracy"] <= 1
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2]
    assert metrics["config"]["limit_train"] == 1000
    csv_lines = (model_dir / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss,penalty") and len(csv_lines) == 3
    png = (images / "l1_l2_history.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".write-test"))


def test_existing_model_needs_force(tmp_path, quick_model):
    models = quick_model.parent
    before = snapshot(models)
    result = invoke("train", "--name", "quick", "--models-dir", models, "--epochs", "1")
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert snapshot(models) == before


@pytest.mark.parametrize(
    "args, exit_code, message",
    [
        (["--l1", "-1e-5"], 2, "--l1 must be >= 0"),
        (["--weight-decay", "x"], 2, "--weight-decay"),
        (["--epochs", "0"], 2, "--epochs must be >= 1"),
        (["--batch-size", "-4"], 2, "--batch-size"),
        (["--device", "tpu"], 2, "--device"),
        (["--name", "../escape"], 2, "--name"),
        (["--data-dir", "/nonexistent/mnist", "--limit-train", "10"], 1, "MNIST not found"),
    ],
)
def test_bad_usage_is_one_line_and_changes_nothing(args, exit_code, message, tmp_path, monkeypatch):
    monkeypatch.setattr("regcli.data._download", _offline)
    result = invoke("train", "--models-dir", tmp_path / "m", "--images-dir", tmp_path / "i", *args)
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == {}


def _offline(root):
    from regcli.data import RegcliError

    raise RegcliError(f"MNIST not found in {root} and the download failed (offline)")


def test_summary_prints_the_layers_and_total():
    result = invoke("summary")
    assert result.exit_code == 0
    assert "global average pool" in result.stdout
    total = result.stdout.strip().splitlines()[-1]
    assert total.startswith("total") and int(total.split()[-1].replace(",", "")) < 10_000


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


def test_checkpoint_is_plain_data(quick_model):
    payload = load_checkpoint(quick_model)
    assert isinstance(payload["config"], dict) and isinstance(payload["state_dict"], dict)
