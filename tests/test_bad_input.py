"""Bad input of every kind, table-driven: one test per command family.

Each case is one command, its exit code (2: usage, 1: runtime), fragments of the one `error: ...`
line it must print (and no traceback), and the files that must be unchanged afterwards: the whole
tmp folder, folders included, is snapshotted before and after, so a failed command may neither
change a file nor leave a new file or an empty folder behind.

The bad files are built realistically: checkpoints are the real quick model's with one thing
broken, ONNX files are onnx.helper graphs with one property wrong, and last.pt is a real
interrupted run's with one part damaged.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from regcli.core.config import TrainConfig
from tests.conftest import (
    DATA_DIR,
    RESUMABLE,
    TINY,
    changes,
    copy_model,
    deadline,
    edit_checkpoint,
    fails_cleanly,
    invoke,
    no_traceback,
    one_line_error,
    places,
    resume,
    train_model,
    tree,
)


def damaged(source: Path, damage, tmp_path: Path, mnist, command: str, extra):
    """Copy a model, damage it, and run `command` on it: (its folder, the tree before, result)."""
    model_dir = copy_model(source, tmp_path / "models")
    digits_npy(tmp_path, mnist)
    damage(model_dir)
    before = tree(tmp_path)
    return model_dir, before, invoke(command, model_dir, *extra(tmp_path))


def digits_npy(tmp_path: Path, mnist) -> Path:
    path = tmp_path / "digits.npy"
    np.save(path, mnist[1].images[:3])
    return path


# --- model.pt of another network, with missing/extra keys, unsafe, newer, broken ---------------


def rewrite(change):
    """A damage of model.pt (conftest.edit_checkpoint)."""
    return edit_checkpoint("model.pt", change)


def with_state(change):
    def damage_state(payload):
        payload["state_dict"] = change(dict(payload["state_dict"]))

    return rewrite(damage_state)


def without_block(state):
    """The 8th conv block's weights are missing (a shallower network)."""
    return {k: v for k, v in state.items() if not k.startswith("layers.8.")}


def with_head(state):
    """Extra keys: a fully connected head regcli's network does not have."""
    return {**state, "fc.weight": torch.randn(10, 16), "fc.bias": torch.zeros(10)}


def wider_first_conv(state):
    """The same keys, one tensor of another shape (16 first-layer filters, not 10)."""
    return {**state, "layers.1.0.weight": torch.randn(16, 1, 3, 3)}


def logistic_regression(state):
    """Another architecture entirely: flatten + one linear layer."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).state_dict()


def as_lists(state):
    return {k: v.tolist() for k, v in state.items()}


def whole_module(model_dir: Path) -> None:
    """torch.save(model) instead of its state: a pickle of Python objects (regcli.nn.model.Net)."""
    from regcli.store.checkpoints import load_model

    net, _ = load_model(model_dir)
    torch.save(net, model_dir / "model.pt")


def bare_state_dict(model_dir: Path) -> None:
    torch.save(
        torch.load(model_dir / "model.pt", weights_only=True)["state_dict"], model_dir / "model.pt"
    )


def truncated(name: str):
    def damage(model_dir: Path) -> None:
        raw = (model_dir / name).read_bytes()
        (model_dir / name).write_bytes(raw[: len(raw) // 2])

    return damage


def newer_format(payload):
    payload["format_version"] = 99


def no_config(payload):
    del payload["config"]


CHECKPOINT_DAMAGE = [
    pytest.param(with_state(without_block), "weights do not fit", id="missing-keys"),
    pytest.param(with_state(with_head), "weights do not fit", id="extra-keys"),
    pytest.param(with_state(wider_first_conv), "weights do not fit", id="other-shape"),
    pytest.param(with_state(logistic_regression), "weights do not fit", id="other-network"),
    pytest.param(with_state(as_lists), "holds no weights", id="weights-not-tensors"),
    pytest.param(whole_module, "Python objects", id="unsafe-pickle"),
    pytest.param(rewrite(newer_format), "format version 99", id="newer-format"),
    pytest.param(bare_state_dict, "not a regcli checkpoint", id="bare-state-dict"),
    pytest.param(rewrite(no_config), "invalid config", id="no-config"),
    pytest.param(truncated("model.pt"), "not a readable regcli checkpoint", id="truncated"),
]

# command -> (arguments after the model folder, whether every file must stay as it was; report
# draws each model's history before it loads the model, so there only the old files must stay)
MODEL_COMMANDS = {
    "evaluate": (lambda tmp: ["--data-dir", DATA_DIR], True),
    "export": (lambda tmp: ["--data-dir", DATA_DIR], True),
    "misclassified": (lambda tmp: ["--data-dir", DATA_DIR, "--images-dir", tmp / "images"], True),
    "weights": (lambda tmp: ["--images-dir", tmp / "images"], True),
    "compare": (lambda tmp: ["--images-dir", tmp / "images"], True),
    "prune": (
        lambda tmp: ["--sparsity", "0.5", "--data-dir", DATA_DIR, "--images-dir", tmp / "images"],
        True,
    ),
    "predict": (lambda tmp: [tmp / "digits.npy"], True),
    "report": (lambda tmp: ["--data-dir", DATA_DIR, "--images-dir", tmp / "images"], False),
}


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
@pytest.mark.parametrize("damage, reason", CHECKPOINT_DAMAGE)
def test_damaged_checkpoint(command, damage, reason, quick_model, mnist, tmp_path):
    extra, strict = MODEL_COMMANDS[command]
    model_dir, before, result = damaged(quick_model, damage, tmp_path, mnist, command, extra)
    if strict:
        fails_cleanly(result, 1, [reason, str(model_dir / "model.pt")], before, tmp_path)
    else:
        no_traceback(result)
        line = one_line_error(result, 1, reason)
        assert str(model_dir / "model.pt") in line and "weights_only" not in result.output
        after = tree(tmp_path)
        assert all(after.get(p, "gone") == content for p, content in before.items())


# --- ONNX files regcli cannot use --------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def linear_onnx(
    model_dir: Path,
    *,
    classes: int = 10,
    declared: int | None = None,
    input_type: int = TensorProto.FLOAT,
    output_type: int = TensorProto.FLOAT,
    probabilities: bool = False,
) -> None:
    """A well-formed ONNX classifier (flatten, one matrix) with regcli's provenance metadata,
    wrong only where told: classes, declared output width, input/output type, extra output."""
    numpy_type = np.float64 if input_type == TensorProto.DOUBLE else np.float32
    weight = np.random.default_rng(0).normal(0, 0.01, (784, classes)).astype(numpy_type)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weight"], ["scores"]),
        helper.make_node("Cast", ["scores"], ["logits"], to=output_type)
        if output_type != input_type
        else helper.make_node("Identity", ["scores"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", output_type, ["N", declared or classes])]
    if probabilities:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        outputs.append(helper.make_tensor_value_info("probabilities", output_type, ["N", classes]))
    graph = helper.make_graph(
        nodes,
        "foreign",
        [helper.make_tensor_value_info("image", input_type, ["N", 1, 28, 28])],
        outputs,
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    helper.set_model_props(model, {"source_sha256": sha256_of(model_dir / "model.pt")})
    (model_dir / "model.onnx").write_bytes(model.SerializeToString())


def without_provenance(model_dir: Path) -> None:
    """regcli's own export with its metadata stripped (as another tool would save it)."""
    proto = onnx.load(str(model_dir / "model.onnx"))
    del proto.metadata_props[:]
    (model_dir / "model.onnx").write_bytes(proto.SerializeToString())


ONNX_DAMAGE = [
    pytest.param(lambda d: linear_onnx(d, probabilities=True), "2 outputs", id="two-outputs"),
    pytest.param(lambda d: linear_onnx(d, classes=12), "[N, 10]", id="wrong-output-shape"),
    pytest.param(
        lambda d: linear_onnx(d, classes=12, declared=10), "model.onnx", id="lying-output-shape"
    ),
    pytest.param(
        lambda d: linear_onnx(d, input_type=TensorProto.DOUBLE),
        "tensor(double)",
        id="float64-input",
    ),
    pytest.param(
        lambda d: linear_onnx(d, output_type=TensorProto.DOUBLE),
        "tensor(double)",
        id="float64-output",
    ),
    pytest.param(without_provenance, "regcli export", id="no-provenance"),
    pytest.param(truncated("model.onnx"), "not a loadable ONNX model", id="truncated"),
]

ONNX_COMMANDS = {
    "evaluate": lambda tmp: ["--data-dir", DATA_DIR],
    "misclassified": lambda tmp: ["--data-dir", DATA_DIR, "--images-dir", tmp / "images"],
    "predict": lambda tmp: [tmp / "digits.npy"],
    "prune": lambda tmp: [
        "--sparsity",
        "0.5",
        "--data-dir",
        DATA_DIR,
        "--images-dir",
        tmp / "images",
    ],
}


@pytest.mark.parametrize("command", list(ONNX_COMMANDS))
@pytest.mark.parametrize("damage, reason", ONNX_DAMAGE)
def test_unusable_onnx(command, damage, reason, exported, mnist, tmp_path):
    def extra(tmp):
        return ["--backend", "onnx", *ONNX_COMMANDS[command](tmp)]

    model_dir, before, result = damaged(exported, damage, tmp_path, mnist, command, extra)
    fails_cleanly(result, 1, [reason, str(model_dir / "model.onnx")], before, tmp_path)


# --- --resume with a broken last.pt ------------------------------------------------------------


def last_state(change):
    """A damage: the real last.pt's dict, changed, saved back with torch.save."""

    def damage(run_dir: Path) -> None:
        state = torch.load(run_dir / "last.pt", weights_only=True)
        state = change(state) or state
        torch.save(state, run_dir / "last.pt")

    return damage


def drop(key):
    def change(state):
        del state[key]

    return last_state(change)


def set_part(key, make):
    def change(state):
        state[key] = make(state)

    return last_state(change)


def config_object(run_dir: Path) -> None:
    """The config as a TrainConfig object, not a table: a pickle of Python objects."""
    state = torch.load(run_dir / "last.pt", weights_only=True)
    state["config"] = RESUMABLE
    torch.save(state, run_dir / "last.pt")


RESUME_DAMAGE = [
    pytest.param(drop("config"), id="no-config"),
    pytest.param(set_part("config", lambda s: "epochs = 2"), id="config-not-a-table"),
    pytest.param(drop("weights"), id="no-weights"),
    pytest.param(set_part("weights", lambda s: as_lists(s["weights"])), id="weights-as-lists"),
    pytest.param(set_part("weights", lambda s: without_block(s["weights"])), id="weights-missing"),
    pytest.param(set_part("weights", lambda s: with_head(s["weights"])), id="weights-extra"),
    pytest.param(
        set_part("weights", lambda s: wider_first_conv(s["weights"])), id="weights-other-shape"
    ),
    pytest.param(
        set_part("momentum", lambda s: without_block(s["momentum"])), id="momentum-missing"
    ),
    pytest.param(drop("history"), id="no-history"),
    pytest.param(set_part("history", lambda s: [{"epoch": 1}]), id="history-incomplete"),
    pytest.param(drop("group"), id="no-group"),
    pytest.param(drop("run"), id="no-run-record"),
    pytest.param(set_part("format_version", lambda s: 99), id="newer-format"),
    pytest.param(config_object, id="unsafe-pickle"),
    pytest.param(truncated("last.pt"), id="truncated"),
]


def test_the_undamaged_interrupted_run_resumes(interrupted, tmp_path):
    """The control for the table below: only the damage makes those fail."""
    run_dir = copy_model(interrupted, tmp_path / "models", "run")
    result = resume(tmp_path)
    assert result.exit_code == 0, result.output
    assert (run_dir / "model.pt").is_file() and not (run_dir / "last.pt").exists()


@pytest.mark.parametrize("damage", RESUME_DAMAGE)
def test_resume_from_a_broken_last_pt(damage, interrupted, tmp_path):
    run_dir = copy_model(interrupted, tmp_path / "models", "run")
    damage(run_dir)
    before = tree(tmp_path)
    fails_cleanly(resume(tmp_path), 1, [str(run_dir / "last.pt")], before, tmp_path)


# --- metrics.json of the wrong shape beside a real model.pt ------------------------------------

GOOD_RECORD = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8}
METRICS_DAMAGE = [
    pytest.param('{"epochs": []}', id="empty-epochs-no-config"),
    pytest.param("[1, 2]", id="a-list"),
    pytest.param("null", id="null"),
    pytest.param('"metrics"', id="a-string"),
    pytest.param(
        json.dumps({"config": TrainConfig().as_dict(), "epochs": [{"epoch": 1}]}),
        id="records-missing-keys",
    ),
    pytest.param(
        json.dumps({"config": TrainConfig().as_dict(), "epochs": {"1": GOOD_RECORD}}),
        id="epochs-not-a-list",
    ),
    pytest.param(json.dumps({"config": TrainConfig().as_dict(), "epochs": []}), id="no-epochs"),
    pytest.param('{"config": {}, "epochs": [', id="not-json"),
]
METRICS_COMMANDS = {
    "compare": lambda tmp, model: ["compare", model, "--images-dir", tmp / "images"],
    "report": lambda tmp, model: [
        "report",
        model,
        "--data-dir",
        DATA_DIR,
        "--images-dir",
        tmp / "images",
    ],
    # runs lists every folder: a broken one is a row saying so, not a failure of the listing
    "runs": lambda tmp, model: ["runs", "--models-dir", tmp / "models"],
}


@pytest.mark.parametrize("command", list(METRICS_COMMANDS))
@pytest.mark.parametrize("content", METRICS_DAMAGE)
def test_metrics_of_the_wrong_shape(command, content, quick_model, tmp_path):
    model_dir = copy_model(quick_model, tmp_path / "models")
    (model_dir / "metrics.json").write_text(content)
    before = tree(tmp_path)
    result = invoke(*METRICS_COMMANDS[command](tmp_path, model_dir))
    metrics = str(model_dir / "metrics.json")
    if command == "runs":
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output and not result.stderr.strip()
        (row,) = [line for line in result.stdout.splitlines() if line.startswith("quick")]
        assert "unreadable" in row and metrics in row, row
        assert not changes(before, tree(tmp_path))
    else:
        fails_cleanly(result, 1, [metrics], before, tmp_path)


# --- report --readme: a README it cannot update --------------------------------------------------

START = "<!-- results-table:start (generated by `regcli report`; do not edit) -->"
END = "<!-- results-table:end -->"
README_DAMAGE = [
    pytest.param(f"# study\n\n{END}\nold table\n{START}\n", "markers", id="markers-out-of-order"),
    pytest.param(f"# study\n\n{START}\n{START}\nold\n{END}\n", "markers", id="start-twice"),
    pytest.param("# study\n\nno generated section\n", "markers", id="no-markers"),
    pytest.param(None, "no such file", id="missing"),
    pytest.param(f"{START}\ncaf\xe9\n{END}\n".encode("latin-1"), "not UTF-8", id="not-utf8"),
]


@pytest.mark.parametrize("content, reason", README_DAMAGE)
def test_report_refuses_a_readme_before_any_work(content, reason, quick_model, tmp_path):
    model_dir = copy_model(quick_model, tmp_path / "models")
    readme = tmp_path / "README.md"
    if isinstance(content, str):
        readme.write_text(content)
    elif content is not None:
        readme.write_bytes(content)
    before = tree(tmp_path)
    result = invoke(
        "report",
        model_dir,
        "--readme",
        readme,
        "--data-dir",
        DATA_DIR,
        "--images-dir",
        tmp_path / "images",
    )
    fails_cleanly(result, 1, [reason, str(readme)], before, tmp_path)


# --- values that cannot work: usage errors before any work --------------------------------------


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


HUGE = str(10**30)
USAGE_CASES = [
    pytest.param(["train", "--l1", "inf"], "--l1", id="l1-inf"),
    pytest.param(["train", "--l1", "nan"], "--l1", id="l1-nan"),
    pytest.param(["train", "--weight-decay", "inf"], "--weight-decay", id="weight-decay-inf"),
    pytest.param(["train", "--weight-decay", "nan"], "--weight-decay", id="weight-decay-nan"),
    pytest.param(["train", "--lr", "inf"], "--lr", id="lr-inf"),
    pytest.param(["train", "--lr", "nan"], "--lr", id="lr-nan"),
    pytest.param(["train", "--lr", "-inf"], "--lr", id="lr-minus-inf"),
    pytest.param(["train", "--momentum", "nan"], "--momentum", id="momentum-nan"),
    pytest.param(["train", "--batch-size", HUGE], "--batch-size", id="batch-size-1e30"),
    pytest.param(["train", "--seed", str(2**64)], "--seed", id="seed-2-64"),
    pytest.param(["train", "--seed", "-1"], "--seed", id="seed-negative"),
    pytest.param(["train", "--epochs", HUGE], "--epochs", id="epochs-1e30"),
    pytest.param(["train", "--seeds", HUGE], "--seeds", id="seeds-1e30"),
    pytest.param(["train", "--config", "lr = nan\n"], "--lr", id="config-lr-nan"),
    pytest.param(["train", "--config", f"seed = {2**64}\n"], "--seed", id="config-seed-2-64"),
    pytest.param(["train", "--name", "run", "--resume"], "nothing to resume", id="resume-nothing"),
    pytest.param(["train", "--resume", "--force"], "--force", id="resume-and-force"),
    pytest.param(["sweep", "--l1", "0,nan"], "--l1", id="sweep-l1-nan"),
    pytest.param(["sweep", "--weight-decay", "inf"], "--weight-decay", id="sweep-wd-inf"),
    pytest.param(["sweep", "--lr", "nan"], "--lr", id="sweep-lr-nan"),
    pytest.param(["sweep", "--seeds", HUGE], "--seeds", id="sweep-seeds-1e30"),
    pytest.param(["sweep", "--batch-size", HUGE], "--batch-size", id="sweep-batch-size-1e30"),
    pytest.param(["sweep", "--l1", f"1e-6:1e-3:{HUGE}"], "--l1", id="sweep-l1-range-1e30"),
    pytest.param(["prune", "--sparsity", "nan"], "--sparsity", id="prune-sparsity-nan"),
    pytest.param(["prune", "--sparsity", "inf"], "--sparsity", id="prune-sparsity-inf"),
    pytest.param(["misclassified", "--count", HUGE], "--count", id="misclassified-count-1e30"),
]


@pytest.mark.parametrize("args, fragment", USAGE_CASES)
def test_values_that_cannot_work_are_usage_errors(args, fragment, tmp_path):
    command, *options = args
    if options[0] == "--config":
        options = ["--config", toml(tmp_path, options[1])]
    before = tree(tmp_path)
    with deadline(3, "the value was not refused while parsing"):
        result = invoke(command, *options, *places(tmp_path))
    fails_cleanly(result, 2, [fragment], before, tmp_path)


# --- training that goes wrong, and a strong penalty that is not "wrong" ---------------------------

DIVERGING = [
    pytest.param(["--lr", "50", *TINY], id="lr-50-tiny"),
    pytest.param(["--lr", "50", *TINY, "--batch-size", "32"], id="lr-50-tiny-batch-32"),
    pytest.param(["--lr", "1e6", *TINY], id="lr-at-its-maximum-non-finite"),
]


@pytest.mark.parametrize("options", DIVERGING)
def test_divergence_is_one_line_with_epoch_and_batch(options, tmp_path):
    models = tmp_path / "models"
    result = invoke(
        "train",
        "--name",
        "run",
        *options,
        *places(tmp_path),
    )
    no_traceback(result)
    line = one_line_error(result, 1, "diverged")
    assert "epoch 1" in line and "batch" in line and str(models / "run") in line, line
    assert not (models / "run" / "model.pt").exists() and not (models / "run" / "last.pt").exists()
    metrics = json.loads((models / "run" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["diverged"]["epoch"] == 1


def test_a_strong_finite_penalty_trains_with_a_warning(tmp_path):
    models = tmp_path / "models"
    result = invoke(
        "train",
        "--name",
        "strong",
        "--l1",
        "1",
        *TINY,
        *places(tmp_path),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "diverged" not in result.output
    (line,) = result.stderr.strip().splitlines()  # --quiet: the warning and nothing else
    assert line.startswith("warning: ") and "--l1" in line and "dwarfs" in line, line
    assert (models / "strong" / "model.pt").is_file()
    assert json.loads((models / "strong" / "metrics.json").read_text())["status"] == "finished"


# --- the MNIST files missing ------------------------------------------------------------------

DATA_COMMANDS = [
    pytest.param(
        lambda tmp, model: ["train", "--name", "run", *TINY, "--images-dir", tmp / "images"],
        id="train",
    ),
    pytest.param(
        lambda tmp, model: ["sweep", "--l1", "0", "--weight-decay", "0", "--seeds", "1", *TINY],
        id="sweep",
    ),
    pytest.param(lambda tmp, model: ["evaluate", model], id="evaluate"),
    pytest.param(
        lambda tmp, model: ["misclassified", model, "--images-dir", tmp / "images"],
        id="misclassified",
    ),
    pytest.param(lambda tmp, model: ["prune", model, "--images-dir", tmp / "images"], id="prune"),
    pytest.param(lambda tmp, model: ["export", model, "--force"], id="export"),
    pytest.param(lambda tmp, model: ["report", model, "--images-dir", tmp / "images"], id="report"),
]


def offline(url, target, max_bytes, timeout=None):
    raise OSError("[Errno 101] Network is unreachable\nwhile connecting to the mirror")


@pytest.mark.parametrize("command", DATA_COMMANDS)
@pytest.mark.parametrize("where", ["option", "option-empty-folder", "environment"])
def test_missing_mnist(command, where, quick_model, tmp_path, monkeypatch):
    monkeypatch.setattr("regcli.data.mnist.fetch", offline)
    model_dir = copy_model(quick_model, tmp_path / "models")
    data_dir = tmp_path / "nodata"
    if where == "option-empty-folder":
        data_dir.mkdir()
    options = ["--data-dir", data_dir]
    if where == "environment":
        monkeypatch.setenv("REGCLI_DATA_DIR", str(data_dir))
        options = []
    before = tree(tmp_path)
    result = invoke(*command(tmp_path, model_dir), "--models-dir", tmp_path / "models", *options)
    where_to_look = [str(data_dir), "--data-dir", "$REGCLI_DATA_DIR", "unreachable"]
    fails_cleanly(result, 1, where_to_look, before, tmp_path)


# --- predict: good and bad inputs in one batch -------------------------------------------------


def test_predict_good_and_bad_inputs_together(exported, mnist, tmp_path):
    images = mnist[1].images
    Image.fromarray(255 - images[0]).resize((84, 84)).convert("RGB").save(tmp_path / "seven.png")
    np.save(tmp_path / "two.npy", images[1])
    with (tmp_path / "archive.npy").open("wb") as f:  # an .npz under a .npy name
        np.savez(f, images=images[:2])
    np.save(tmp_path / "bool.npy", images[:2] > 128)
    np.save(tmp_path / "text.npy", np.full((28, 28), "x"))
    np.save(tmp_path / "complex.npy", images[:2].astype(np.complex64))
    reasons = {
        "archive.npy": ".npz archive",
        "bool.npy": "dtype bool",
        "text.npy": "dtype <U1",
        "complex.npy": "dtype complex64",
    }
    out = tmp_path / "results.csv"
    inputs = [tmp_path / name for name in ("seven.png", *reasons, "two.npy")]
    before = tree(tmp_path)
    result = invoke("predict", exported, *inputs, "--backend", "onnx", "--out", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = [line.split() for line in result.stdout.strip().splitlines()]
    assert [(Path(r[0]).name, r[1]) for r in rows] == [("seven.png", "7"), ("two.npy[0]", "2")]
    *errors, wrote = result.stderr.strip().splitlines()
    assert wrote == f"wrote {out}"  # the rows that could be predicted, and the failures
    assert len(errors) == len(reasons), errors
    for line, (name, reason) in zip(errors, reasons.items(), strict=True):
        assert line.startswith("error: ") and name in line and reason in line, line
        assert "shape" not in line, line
    assert len(out.read_text().splitlines()) == 1 + 6
    after = tree(tmp_path)
    assert changes(before, after) == [f"new {out}"]
    as_json = invoke("predict", exported, *inputs, "--backend", "onnx", "--json", "--quiet")
    objects = [json.loads(line) for line in as_json.stdout.strip().splitlines()]
    assert as_json.exit_code == 1 and len(objects) == 2 + len(reasons)  # every input, failed too
    failed = {Path(o["path"]).name: o["error"] for o in objects if o["status"] == "error"}
    assert set(failed) == set(reasons) and all(reasons[n] in e for n, e in failed.items())
    assert [Path(o["path"]).name for o in objects if o["status"] == "ok"] == [
        "seven.png",
        "two.npy[0]",
    ]


# --- the CLI surface ----------------------------------------------------------------------------

COMMANDS = [
    "train",
    "summary",
    "export",
    "evaluate",
    "misclassified",
    "predict",
    "compare",
    "report",
    "weights",
    "prune",
    "runs",
    "sweep",
]


def test_bare_regcli_prints_help_without_an_error_line():
    result = invoke()
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "train" in result.output
    assert not any(line.strip().startswith("error") for line in result.output.splitlines())
    assert not result.stderr.strip() or "Usage" in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    for leak in ("<bool>", "list[Path]", "<list", "Path]", "NoneType"):
        assert leak not in result.stdout, (leak, result.stdout)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_and_cuts_nothing(command, monkeypatch):
    """Rich shortens what does not fit its column with an ellipsis: no option, value or word
    of any command's help may be cut at 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("typer.rich_utils.MAX_WIDTH", 80)
    text = invoke(command, "--help").stdout
    assert "…" not in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text


# --- the comparison figure draws a model below 90% ----------------------------------------------


def test_compare_draws_a_weak_model_beside_a_better_one(quick_model, tmp_path):
    models = tmp_path / "models"
    weak = train_model(TrainConfig(epochs=1, limit_train=256, limit_test=128), "weak", models)
    good = copy_model(quick_model, models)
    figure = tmp_path / "figure.png"
    result = invoke("compare", weak, good, "--out", figure, "--json")
    assert result.exit_code == 0, result.output
    accuracy = {m["model"]: m["final_test_accuracy"] for m in json.loads(result.stdout)["models"]}
    assert accuracy["weak"] < 90 < accuracy["quick"], accuracy
    assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 10_000


def test_out_for_several_models_is_a_usage_error(quick_model, tmp_path):
    """`misclassified --out` names one file: two real models with one --out is refused before
    any work."""
    models = tmp_path / "models"
    first, second = copy_model(quick_model, models, "a"), copy_model(quick_model, models, "b")
    before = tree(tmp_path)
    result = invoke(
        "misclassified", first, second, "--out", tmp_path / "x.png", "--data-dir", DATA_DIR
    )
    fails_cleanly(result, 2, ["--out names one file", "2 models"], before, tmp_path)
