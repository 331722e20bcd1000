"""Option precedence, checked at the core's door: defaults < --config < options typed on the
command line. The training core is patched out, so each test sees exactly the TrainConfigs and
RunOptions a command hands over, and nothing trains."""

from pathlib import Path

import pytest

from regcli.core.config import Existing, RunOptions, TrainConfig
from tests.conftest import SUITE_THREADS, invoke, one_line_error


@pytest.fixture
def handed(monkeypatch):
    """What `train` and `sweep` hand to the core: (requests, options), once per command."""
    calls = []

    def fake_job(requests, options, reporter=None):
        calls.append((requests, options))
        return []

    monkeypatch.setattr("regcli.jobs.runner.train_job", fake_job)
    return calls


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_train_hands_over_the_defaults(handed, tmp_path):
    result = invoke("train", "--models-dir", tmp_path)
    assert result.exit_code == 0, result.output
    ((requests, options),) = handed
    assert [r.config for r in requests] == [TrainConfig()] and requests[0].name == "none"
    assert options == RunOptions(
        models_dir=tmp_path,
        jobs=1,  # the suite's REGCLI_JOBS and REGCLI_THREADS (conftest.py)
        threads=SUITE_THREADS,
        versioned=True,
        existing=Existing.fail,
        command=("regcli", "train", "--models-dir", str(tmp_path)),
    )


def test_typed_options_win_over_the_file_which_wins_over_the_defaults(handed, tmp_path):
    config = toml(tmp_path, "epochs = 3\nlr = 0.05\nreg_scope = 'all'\n")
    result = invoke("train", "--config", config, "--epochs", "2", "--name", "x")
    assert result.exit_code == 0, result.output
    ((requests, options),) = handed
    expected = TrainConfig(epochs=2, lr=0.05, reg_scope="all")
    assert [r.config for r in requests] == [expected] and requests[0].name == "x"
    assert options.versioned is False and options.existing == Existing.fail


@pytest.mark.parametrize(
    "flags, existing",
    [
        (["--force"], Existing.force),
        (["--resume"], Existing.resume),
        (["--seeds", "2"], Existing.reuse),
        ([], Existing.fail),
    ],
)
def test_what_becomes_of_an_existing_folder(flags, existing, handed, tmp_path):
    result = invoke("train", "--name", "x", *flags, "--models-dir", tmp_path)
    assert result.exit_code == 0, result.output
    ((requests, options),) = handed
    assert options.existing == existing
    assert [r.config.seed for r in requests] == ([0, 1] if "--seeds" in flags else [1])


def test_run_options_are_handed_over_as_typed(handed, tmp_path):
    result = invoke(
        "train",
        "--device",
        "cpu",
        "--group-size",
        "3",
        "--no-deterministic",
        "--images-dir",
        tmp_path / "i",
        "--data-dir",
        tmp_path / "d",
        "--models-dir",
        tmp_path / "m",
    )
    assert result.exit_code == 0, result.output
    ((_, options),) = handed
    assert (options.device, options.group_size, options.deterministic) == ("cpu", 3, False)
    assert (options.models_dir, options.images_dir, options.data_dir) == (
        tmp_path / "m",
        tmp_path / "i",
        tmp_path / "d",
    )


@pytest.mark.parametrize("flags", [["--force", "--resume"], ["--resume", "--seeds", "2"]])
def test_contradictions_are_refused_before_the_core(flags, handed, tmp_path):
    one_line_error(invoke("train", *flags, "--models-dir", tmp_path), 2)
    assert handed == []


def test_sweep_takes_its_grid_from_the_file_and_the_typed_options(handed, tmp_path, monkeypatch):
    monkeypatch.setattr("regcli.jobs.sweep.train", lambda job, options, reporter: handed.append(
        (job.requests(), options)) or [])  # fmt: skip
    config = toml(tmp_path, "epochs = 4\n\n[sweep]\nl1 = [0, 1e-4]\nweight_decay = [0]\n")
    result = invoke("sweep", "--config", config, "--seeds", "2", "--epochs", "3",
                    "--models-dir", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    ((requests, options),) = handed
    cells = sorted({(r.name, r.config.l1, r.config.weight_decay) for r in requests})
    assert cells == [("sweep/l1-0.0001_wd-0", 1e-4, 0.0), ("sweep/l1-0_wd-0", 0.0, 0.0)]
    assert {r.config.seed for r in requests} == {0, 1} and {r.config.epochs for r in requests} == {
        3
    }
    assert options.existing == Existing.reuse and options.images_dir is None


def test_every_training_setting_is_an_option_of_train_and_sweep():
    """...except a pruned run's own settings, which are `regcli prune --retrain`'s."""
    from regcli.core.config import FIELD_NAMES, PRUNE_FIELDS

    train, sweep = invoke("train", "--help").stdout, invoke("sweep", "--help").stdout
    options = {name: f"--{name.replace('_', '-')} " for name in FIELD_NAMES}
    for name, option in options.items():
        if name in PRUNE_FIELDS:
            assert option not in train and option not in sweep, option
            continue
        assert option in train, option
        plural = {"seed": "--seeds ", "train_size": "--train-sizes "}  # a sweep's grid
        assert option in sweep or plural.get(name, option) in sweep, option


@pytest.mark.parametrize(("typed", "sizes"), [([], {500, 1000}), (["--train-sizes", "700"], {700})])
def test_a_sweeps_train_sizes_come_from_the_file_unless_typed(
    typed, sizes, handed, tmp_path, monkeypatch
):
    monkeypatch.setattr("regcli.jobs.sweep.train", lambda job, options, reporter: handed.append(
        job.requests()) or [])  # fmt: skip
    config = toml(tmp_path, "[sweep]\nl1 = [0]\nweight_decay = [0]\ntrain_sizes = [500, 1000]\n")
    result = invoke("sweep", "--config", config, *typed, "--seeds", "1", "--models-dir", tmp_path)
    assert result.exit_code == 0, result.output
    (requests,) = handed
    assert {r.config.train_size for r in requests} == sizes
    assert {r.name for r in requests} == {f"sweep/size-{n}/l1-0_wd-0" for n in sizes}
