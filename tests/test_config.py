"""Every setting in one place: validated when parsed, written and read back as TOML, compared."""

import math
import re

import pytest

from regcli.core.config import TrainConfig, differences
from regcli.core.errors import UsageError
from regcli.store.settings import check_keys, config_toml, parse_toml


@pytest.mark.parametrize(
    "l1, wd, mode", [(0, 0, "none"), (1e-5, 0, "l1"), (0, 1e-4, "l2"), (1e-5, 1e-4, "l1_l2")]
)
def test_mode_follows_the_non_zero_strengths(l1, wd, mode):
    assert TrainConfig(l1=l1, weight_decay=wd).mode == mode


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"l1": -1e-5}, "--l1 must be in [0, 1000]"),
        ({"l1": 1e39}, "--l1 must be in [0, 1000]"),
        ({"weight_decay": 1e4}, "--weight-decay must be in [0, 1000]"),
        ({"lr": 1e30}, "--lr must be in (0, 1e+06]"),
        ({"l1": math.nan}, "--l1 must be a finite number"),
        ({"weight_decay": math.inf}, "--weight-decay must be a finite number"),
        ({"lr": -math.inf}, "--lr must be a finite number"),
        ({"lr": 0.0}, "--lr must be in (0, 1e+06]"),
        ({"epochs": 0}, "--epochs must be >= 1"),
        ({"batch_size": 10**30}, "--batch-size must be in 1..60000"),
        ({"seed": 2**64}, "--seed must be in 0.."),
        ({"epochs": 1.5}, "whole number"),
        ({"epochs": True}, "must be a number"),
        ({"schedule": "cosine"}, "--schedule must be one of onecycle, step"),
        ({"momentum": 0.97}, "--momentum must be in [0, 0.95) for the onecycle schedule"),
        ({"dropout": 1.0}, "--dropout must be in [0, 1)"),
        ({"limit_train": 0}, "--limit-train must be >= 1"),
    ],
)
def test_config_rejects_nonsense(bad, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        TrainConfig(**bad)


def test_plain_numbers_from_files_are_normalised():
    config = TrainConfig(l1=0, epochs=3.0, momentum=0.99, schedule="step")
    assert isinstance(config.l1, float) and isinstance(config.epochs, int)
    assert config.momentum == 0.99  # without one-cycle's +0.05, up to 1 is fine


def test_config_round_trips_as_plain_data_and_as_toml():
    config = TrainConfig(l1=1e-5, weight_decay=1e-4, seed=3, limit_train=100, reg_scope="all")
    assert TrainConfig.from_dict(config.as_dict()) == config
    text = config_toml(config.as_dict(), title="t")
    # an unset optional setting is shown, commented out (TOML has no null), and reads back unset
    assert "# limit_test = (unset)" in text and "\nlimit_test" not in text
    assert "# L1 strength" in text and "degrees" in text  # each setting with its meaning and unit
    assert TrainConfig.from_dict(parse_toml(text, "run.toml")) == config


def test_unknown_settings_and_bad_toml_are_named():
    with pytest.raises(UsageError, match="run.toml: unknown setting 'learning_rate'"):
        check_keys({"learning_rate": 0.1}, tuple(TrainConfig().as_dict()), "run.toml")
    with pytest.raises(UsageError, match="run.toml: not valid TOML"):
        parse_toml("lr = = 1", "run.toml")


def test_differences_name_each_field_with_both_values():
    saved, asked = TrainConfig(l1=1e-5, epochs=1, seed=0), TrainConfig(l1=1e-3, epochs=2, seed=1)
    assert differences(saved, asked) == [
        "l1 1e-05 (asked 0.001)",
        "epochs 1 (asked 2)",
        "seed 0 (asked 1)",
    ]
    assert differences(saved, asked, ignore=("seed",))[-1] == "epochs 1 (asked 2)"
