import json
from dataclasses import replace

import pytest
import torch

from regcli.checkpoints import load_model
from regcli.config import TrainConfig
from regcli.errors import RegcliError, UsageError
from regcli.scoring import score
from regcli.model import torch_predictor
from regcli.train import resolve_device, train
from tests.conftest import QUICK_CONFIG

CPU = torch.device("cpu")


def test_one_epoch_on_ten_thousand_images_learns_mnist(quick_model):
    metrics = json.loads((quick_model / "metrics.json").read_text())
    (record,) = metrics["epochs"]
    # a broken trainer stays near 10%; a working one is well above 93% after one epoch
    assert record["test_accuracy"] >= 0.93
    assert record["train_loss"] < 1.5 and record["penalty"] == 0.0


def test_same_seed_same_metrics_and_another_seed_differs(mnist):
    config = TrainConfig(epochs=1, limit_train=1_000, limit_test=500, l1=1e-4)
    first = train(config, *mnist, CPU)[1]
    again = train(config, *mnist, CPU)[1]
    other = train(replace(config, seed=2), *mnist, CPU)[1]
    strip = lambda history: [{**r.as_dict(), "seconds": 0} for r in history]  # noqa: E731
    assert strip(first) == strip(again)
    assert strip(first) != strip(other)
    assert first[0].penalty > 0


def test_every_mode_trains_through_the_same_code(mnist):
    for l1, wd in [(0, 0), (1e-4, 0), (0, 1e-3), (1e-4, 1e-3)]:
        config = TrainConfig(l1=l1, weight_decay=wd, epochs=1, limit_train=512, limit_test=256)
        model, history = train(config, *mnist, CPU)
        assert len(history) == 1 and (history[0].penalty > 0) == (l1 > 0)
        assert 0 <= history[0].test_accuracy <= 1


def test_record_is_complete_and_the_schedule_ends_low(quick_model):
    metrics = json.loads((quick_model / "metrics.json").read_text())
    record = metrics["epochs"][-1]
    assert set(record) == {
        "epoch",
        "train_loss",
        "penalty",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "lr",
        "seconds",
    }
    assert record["lr"] < QUICK_CONFIG.lr / 100  # one-cycle annealed to near zero
    assert metrics["config"] == QUICK_CONFIG.as_dict()


def test_checkpoint_reloads_to_the_same_test_accuracy(quick_model, mnist):
    model, payload = load_model(quick_model)
    test = mnist[1].head(QUICK_CONFIG.limit_test)
    assert score(torch_predictor(model), test).accuracy == payload["final"]["test_accuracy"]


def test_device_resolution():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in {"cuda", "mps", "cpu"}
    with pytest.raises(UsageError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RegcliError, match="not available"):
            resolve_device("cuda")
