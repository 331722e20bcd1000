"""The trainer on real MNIST: it learns, seeds reproduce, every mode trains through one code path,
PyTorch's own schedules, checkpoints reload."""

import json
from dataclasses import fields, replace

import pytest
import torch

from regcli.core.config import TrainConfig
from regcli.core.errors import RegcliError, UsageError
from regcli.inference.scoring import score
from regcli.nn.grouped import schedule_table
from regcli.nn.model import torch_predictor
from regcli.store.checkpoints import load_model
from regcli.store.records import EPOCH_FIELDS, EpochRecord
from regcli.train.devices import resolve_device
from regcli.train.epochs import penalty_dominates
from regcli.train.trainer import train_group
from tests.conftest import QUICK_CONFIG, TINY, invoke

CPU = torch.device("cpu")


def test_one_epoch_on_ten_thousand_images_learns_mnist(quick_model):
    metrics = json.loads((quick_model / "metrics.json").read_text())
    (record,) = metrics["epochs"]
    # a broken trainer stays near 10%; a working one is well above 93% after one epoch
    assert record["test_accuracy"] >= 0.93
    assert record["train_loss"] < 1.5 and record["penalty"] == 0.0


def test_same_seed_same_metrics_and_another_seed_differs(mnist):
    config = TrainConfig(epochs=1, limit_train=1_000, limit_test=500, l1=1e-4)
    strip = lambda states: [{**r.as_dict(), "seconds": 0} for r in states[0].history]  # noqa: E731
    first = strip(train_group([config], *mnist, CPU)[0])
    again = strip(train_group([config], *mnist, CPU)[0])
    other = strip(train_group([replace(config, seed=2)], *mnist, CPU)[0])
    assert first == again and first != other
    assert first[0]["penalty"] > 0


@pytest.mark.parametrize("l1, wd", [(0, 0), (1e-4, 0), (0, 1e-3), (1e-4, 1e-3)])
def test_every_mode_trains_through_the_same_code(mnist, l1, wd):
    config = TrainConfig(l1=l1, weight_decay=wd, epochs=1, limit_train=512, limit_test=256)
    (state,), info = train_group([config], *mnist, CPU)
    assert info == {"group_size": 1, "cuda_graphs": False, "deterministic": True}
    assert len(state.history) == 1 and (state.history[0].penalty > 0) == (l1 > 0)


def test_record_is_complete_and_the_schedule_ends_low(quick_model):
    metrics = json.loads((quick_model / "metrics.json").read_text())
    record = metrics["epochs"][-1]
    assert tuple(record) == EPOCH_FIELDS == tuple(f.name for f in fields(EpochRecord))
    assert record["lr"] < QUICK_CONFIG.lr / 100  # one-cycle annealed to near zero
    assert metrics["config"] == QUICK_CONFIG.as_dict()


def test_the_schedules_are_pytorchs_own():
    config = TrainConfig(epochs=2, lr=0.2, momentum=0.9)
    lrs, momenta = schedule_table(config, 10)
    assert len(lrs) == 21 and lrs[0] == pytest.approx(0.2 / 25)  # OneCycleLR's div_factor
    assert max(lrs) == pytest.approx(0.2) and lrs[-2] < 1e-5  # the last step's lr
    assert momenta[0] == pytest.approx(0.95) and min(momenta) == pytest.approx(0.85)
    step_lrs, step_momenta = schedule_table(replace(config, schedule="step"), 9)
    assert step_lrs[0] == 0.2 and step_lrs[6] == pytest.approx(0.02)  # x0.1 after a third
    assert set(step_momenta) == {0.9}


def test_checkpoint_reloads_to_the_same_test_accuracy(quick_model, mnist):
    model, payload = load_model(quick_model)
    test = mnist[1].head(QUICK_CONFIG.limit_test)
    assert score(torch_predictor(model), test).accuracy == payload["final"]["test_accuracy"]


def test_device_resolution():
    assert resolve_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    with pytest.raises(UsageError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RegcliError, match="not available"):
            resolve_device("cuda")


def test_a_strong_finite_penalty_is_a_warning_not_a_divergence(tmp_path):
    result = invoke(
        "train",
        "--l1",
        "1",
        *TINY,
        "--models-dir",
        tmp_path / "m",
        "--images-dir",
        tmp_path / "i",
        "--data-dir",
        "data",
    )
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "--l1 1" in warning[0] and "dwarfs the data term" in warning[0]
    metrics = json.loads((tmp_path / "m" / "l1" / "metrics.json").read_text())
    record = metrics["epochs"][0]
    assert metrics["status"] == "finished" and penalty_dominates(
        type("R", (), {"penalty": record["penalty"], "train_loss": record["train_loss"]})
    )
