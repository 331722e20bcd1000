"""Pruning with retraining (`regcli prune --retrain`): the mask stays exact through SGD, a pruned
run is an ordinary model folder (export, both backends, runs, reuse, resume), and bad uses of it
are refused in one line."""

import json
import shutil
from dataclasses import replace

import onnx
import pytest
import torch
from onnx import numpy_helper

from regcli.core.config import TrainConfig
from regcli.jobs.pruned_runs import pruned_config
from regcli.jobs.runs import Request
from regcli.nn.grouped import initial_state, schedule_table
from regcli.nn.pruning import PRUNABLE, pruned_count, stage_sparsity
from regcli.store.checkpoints import load_checkpoint, load_checkpoint_with_hash
from regcli.train.trainer import GroupTrainer, train_group
from tests.conftest import (
    DATA_DIR,
    Interrupter,
    edit_checkpoint,
    invoke,
    no_traceback,
    one_line_error,
    train_cpu,
    train_model,
)

SOURCE = TrainConfig(epochs=1, limit_train=512, limit_test=256, l1=1e-4, seed=3)  # trainer tests
TRAINED = replace(SOURCE, epochs=2, limit_train=4096, limit_test=1000)  # a source worth pruning
CELL = "l1-0.0001_wd-0_prune-0.7_retrain-1"
FAKE_SHA = "ab" * 32
PLACES = ["--data-dir", str(DATA_DIR), "--device", "cpu"]


def conv_weights(state: dict) -> torch.Tensor:
    return torch.cat([state[name].flatten() for name in PRUNABLE])


def test_pruned_weights_stay_exactly_zero_through_every_sgd_step(mnist):
    """Two prune-then-retrain steps with L1 and weight decay on: after each step's epoch the
    pruned conv weights are exactly zero, their momentum too, the mask only grew, and the kept
    weights did train; the unpruned member beside it is untouched by pruning."""
    base = replace(SOURCE, epochs=2, weight_decay=1e-2, l1=1e-3)
    pruned = replace(base, pruned_from=FAKE_SHA, sparsity=0.8, prune_steps=2)
    start = initial_state(pruned)
    other = replace(pruned, sparsity=0.0)  # same steps (a group shares them), nothing pruned
    trainer = GroupTrainer([pruned, other], *mnist, torch.device("cpu"), start=[start, None])
    total, previous = conv_weights(start).numel(), None
    for epoch in (1, 2):
        trainer.train_epoch(epoch)
        member, other = trainer.member_states([[], []], [None, None])
        zeros = ~torch.cat([member.mask[name].flatten() for name in PRUNABLE])
        weights = conv_weights(member.weights)
        assert int(zeros.sum()) == pruned_count(stage_sparsity(0.8, 2, epoch), total)
        assert torch.equal(weights[zeros], torch.zeros(int(zeros.sum())))
        assert torch.equal(conv_weights(member.momentum)[zeros], torch.zeros(int(zeros.sum())))
        assert (weights[~zeros] != conv_weights(start)[~zeros]).float().mean() > 0.9
        assert other.mask is None and int((conv_weights(other.weights) == 0).sum()) == 0
        if previous is not None:
            assert bool((zeros | ~previous).all())  # what was pruned stays pruned
        previous = zeros
    assert int(previous.sum()) == pruned_count(0.8, total)


def test_each_prune_then_retrain_step_restarts_the_schedule():
    config = replace(SOURCE, epochs=4, pruned_from=FAKE_SHA, sparsity=0.5, prune_steps=2)
    lrs, momenta = schedule_table(config, steps_per_epoch=5)
    assert len(lrs) == 4 * 5 + 1
    assert lrs[:10] == lrs[10:20] and momenta[:10] == momenta[10:20]
    assert lrs[0] < max(lrs[:10]) == pytest.approx(config.lr)  # a one-cycle warm-up each step


def test_a_one_shot_iterative_run_and_its_resume_match(mnist, tmp_path):
    """An iterative pruned run interrupted after its first step continues from last.pt (mask
    included) to exactly the weights of an uninterrupted run."""
    models = tmp_path / "models"
    source = train_model(SOURCE, "src", models)
    payload, sha = load_checkpoint_with_hash(source)
    config = pruned_config(SOURCE, sha, sparsity=0.9, retrain=1, steps=2)
    whole, _ = train_group([config], *mnist, torch.device("cpu"), start=[payload["state_dict"]])
    request = Request(config, "pruned/cell", seeded=True, start=source)
    with pytest.raises(Exception, match="stopped"):
        train_cpu([request], models, reporter=Interrupter(after=1))
    last = torch.load(models / "pruned/cell/seed-3/last.pt", weights_only=True)
    assert set(last["mask"]) == set(PRUNABLE)
    (outcome,) = train_cpu([request], models)
    finished = load_checkpoint(outcome.model_dir)
    for key, value in whole[0].weights.items():
        assert torch.equal(finished["state_dict"][key], value), key
    assert finished["config"]["prune_steps"] == 2 and len(finished["config"]) == len(
        TrainConfig().as_dict()
    )


@pytest.fixture(scope="session")
def pruned_once(tmp_path_factory):
    """`regcli prune SRC --sparsity 0.7 --retrain 1` once: (models, source, folder, its --json
    row), read-only for the tests."""
    models = tmp_path_factory.mktemp("pruning") / "models"
    source = train_model(TRAINED, "src", models)
    result = invoke(*prune_args(source, models), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    return models, source, models / "pruned" / CELL / "seed-3", row


def prune_args(source, models, sparsity="0.7") -> list:
    return [
        "prune",
        str(source),
        "--sparsity",
        sparsity,
        "--retrain",
        "1",
        "--models-dir",
        models,
        *PLACES,
    ]


def test_a_pruned_run_is_an_ordinary_model_folder(pruned_once):
    """prune --retrain: a folder per source and sparsity; its model.pt holds the mask and the
    zeros, its export has exact zeros and is smaller zipped, both backends agree, runs lists it,
    and the same command again reuses it."""
    models, source, folder, row = pruned_once
    assert row["model"].endswith("seed-3") and row["sparsity"] == 0.7 and row["steps"] == 1
    assert row["zipped_bytes"] < 0.75 * row["dense_zipped_bytes"]
    assert row["onnx_bytes"] == (folder / "model.onnx").stat().st_size
    assert row["pruned_accuracy"] < row["retrained_accuracy"]
    assert row["retrained_accuracy"] > 0.8  # 4,096 images, 2 epochs, then 70% pruned and 1 more
    payload = load_checkpoint(folder)
    config = TrainConfig.from_dict(payload["config"])
    assert config.pruned_from == load_checkpoint_with_hash(source)[1]
    assert config.sparsity == 0.7 and config.lr == 0.01 and config.seed == SOURCE.seed
    assert payload["run"]["pruned_from"] == str(source)
    kept = torch.cat([payload["mask"][n].flatten() for n in PRUNABLE])
    weights = conv_weights(payload["state_dict"])
    assert int((~kept).sum()) == pruned_count(0.7, kept.numel())
    assert torch.equal(weights[~kept], torch.zeros(int((~kept).sum())))
    graph = onnx.load(str(folder / "model.onnx"))
    held = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    assert sum(int((held[n] == 0).sum()) for n in PRUNABLE) >= int((~kept).sum())
    scores = {}
    for backend in ("torch", "onnx"):
        evaluated = invoke("evaluate", str(folder), "--backend", backend, "--json", *PLACES[:2])
        assert evaluated.exit_code == 0, evaluated.output
        scores[backend] = json.loads(evaluated.stdout)[0]["accuracy"]
    assert scores["torch"] == scores["onnx"] > 0.8  # all 10,000 test images (training: 1,000)
    listed = invoke("runs", "--models-dir", models, "--json")
    assert any(r["name"] == f"pruned/{CELL}/seed-3" for r in json.loads(listed.stdout))
    again = invoke(*prune_args(source, models), "--json")
    assert again.exit_code == 0 and f"reusing {folder}" in again.stderr
    assert json.loads(again.stdout) == [row]


def test_a_changed_source_is_not_taken_for_the_one_a_folder_was_pruned_from(pruned_once, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(pruned_once[0], models)
    source = models / "src"

    def nudge(payload):
        name = PRUNABLE[0]
        payload["state_dict"][name] = payload["state_dict"][name] * 1.001

    edit_checkpoint("model.pt", nudge)(source)
    result = invoke(*prune_args(source, models), "--quiet")
    line = one_line_error(result, 2, "holds a run with other settings")
    assert "pruned_from" in line and "--force" in line


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--iterative", "2"], "add --retrain"),
        (["--retrain", "1", "--sparsity", "1"], "[0, 1)"),
        (["--retrain", "0"], "--retrain must be in 1..100"),
        (["--retrain", "1", "--iterative", "0"], "--iterative must be in 1..20"),
        (["--retrain", "1", "--sparsity", "0", "--iterative", "2"], "--sparsity above 0"),
        (["--retrain", "1", "--name", "../out"], "--name"),
    ],
)
def test_bad_pruning_options_are_one_line(tmp_path, exported, extra, fragment):
    result = invoke("prune", str(exported), *extra, "--models-dir", tmp_path, *PLACES)
    no_traceback(result)
    one_line_error(result, 2, fragment)
    assert not any(tmp_path.iterdir())


def test_retraining_needs_named_sources(tmp_path):
    result = invoke("prune", "--retrain", "1", "--models-dir", tmp_path, *PLACES)
    one_line_error(result, 2, "name the sources")


def test_a_pruned_model_is_no_source_and_no_training_config(pruned_once, tmp_path):
    models, _, folder, _ = pruned_once
    again = invoke("prune", str(folder), "--retrain", "1", "--models-dir", tmp_path, *PLACES)
    one_line_error(again, 2, "itself a pruned run")
    train = invoke("train", "--config", str(folder), "--models-dir", tmp_path, *PLACES)
    one_line_error(train, 2, "regcli prune --retrain")
    assert not any(tmp_path.iterdir())


def test_a_mask_that_does_not_hold_is_a_damaged_checkpoint(pruned_once, tmp_path):
    pruned = tmp_path / "seed-3"
    shutil.copytree(pruned_once[2], pruned)

    def unzero(payload):
        name = PRUNABLE[0]
        payload["state_dict"][name] = payload["state_dict"][name] + 1.0

    edit_checkpoint("model.pt", unzero)(pruned)
    one_line_error(invoke("evaluate", str(pruned), *PLACES[:2]), 1, "not zero")
    edit_checkpoint("model.pt", lambda p: p.pop("mask"))(pruned)
    one_line_error(invoke("evaluate", str(pruned), *PLACES[:2]), 1, "no pruning mask")


def test_prune_json_gives_the_zipped_onnx_size_at_each_level(exported, tmp_path):
    """Without retraining: each level's accuracy and ONNX size; zeros shrink the zipped file,
    not the raw one, and the dense level is the exported file itself."""
    args = ["prune", str(exported), "--sparsity", "0.5,0.9", "--json", "--quiet"]
    result = invoke(*args, "--images-dir", tmp_path, *PLACES[:2])
    assert result.exit_code == 0, result.output
    dense, half, most = json.loads(result.stdout)[0]["points"]
    assert dense["onnx_bytes"] == (exported / "model.onnx").stat().st_size
    assert dense["onnx_bytes"] == half["onnx_bytes"] == most["onnx_bytes"]
    assert dense["zipped_bytes"] > half["zipped_bytes"] > most["zipped_bytes"]
    assert most["zipped_bytes"] < 0.5 * dense["zipped_bytes"]


def test_an_interrupted_prune_says_what_it_kept_and_how_to_go_on(
    pruned_once, tmp_path, monkeypatch
):
    import signal

    from regcli.core.errors import Interrupted

    def stop(self, epoch, reporter=None, stop=None):
        raise Interrupted("stopped by SIGTERM", signal.SIGTERM)

    monkeypatch.setattr(GroupTrainer, "train_epoch", stop)
    source = pruned_once[1]
    result = invoke(*prune_args(source, tmp_path / "models"), "--quiet")
    line = one_line_error(result, 128 + signal.SIGTERM, "stopped by SIGTERM")
    assert line.startswith("interrupted:") and "continue with: regcli prune" in line


def test_runs_lists_filters_and_times_the_pruned_runs(pruned_once):
    models, _, folder, _ = pruned_once
    listed = invoke("runs", "--models-dir", models, "--name", "pruned/*", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert row["name"] == f"pruned/{CELL}/seed-3" and row["state"] == "finished"
    assert (row["started"], row["seconds"]) == (
        metrics["run"]["started"],
        metrics["run"]["seconds"],
    )
    everything = json.loads(invoke("runs", "--models-dir", models, "--json").stdout)
    assert {r["name"] for r in everything} == {"src", f"pruned/{CELL}/seed-3"}
    none = invoke("runs", "--models-dir", models, "--status", "interrupted", "--json")
    assert json.loads(none.stdout) == []
    table = invoke("runs", "--models-dir", models, "--status", "finished")
    assert "started (UTC)" in table.stdout and metrics["run"]["started"][:10] in table.stdout
    one_line_error(invoke("runs", "--models-dir", models, "--status", "done"), 2, "--status")
