"""The ONNX export: logits match PyTorch, the file is self-contained, its metadata round-trips,
evaluate and misclassified agree across backends, ONNX commands never load PyTorch."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from regcli.core.files import sha256_bytes
from regcli.inference.backends import open_predictor
from regcli.inference.evaluate import evaluate_model
from regcli.inference.scoring import to_unit
from regcli.store.checkpoints import load_model
from tests.conftest import DATA_DIR, invoke, one_line_error, snapshot


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_logits_match_pytorch(exported, mnist, batch):
    images = to_unit(mnist[1].images[100 : 100 + batch])
    torch_logits = open_predictor(exported, backend="torch")(images)
    onnx_logits = open_predictor(exported, backend="onnx")(images)
    assert onnx_logits.shape == (batch, 10)
    assert np.allclose(onnx_logits, torch_logits, atol=1e-4, rtol=0)


def test_both_backends_agree_on_the_full_test_set(exported, mnist):
    test = mnist[1]
    torch_summary, torch_scores = evaluate_model(exported, backend="torch", test=test)
    onnx_summary, onnx_scores = evaluate_model(exported, backend="onnx", test=test)
    assert torch_summary["total"] == onnx_summary["total"] == 10_000
    assert torch_summary["correct"] == onnx_summary["correct"]
    assert np.array_equal(torch_scores.misclassified, onnx_scores.misclassified)
    assert torch_summary["confusion"] == onnx_summary["confusion"]
    assert onnx_summary["loss"] == pytest.approx(torch_summary["loss"], abs=1e-5)


def test_file_is_self_contained_and_runs_in_plain_onnxruntime(exported, mnist):
    """No regcli, no constants: raw pixels in [0, 1] in, logits out, any batch size."""
    pixels = to_unit(mnist[1].images)
    np.save(exported.parent / "pixels.npy", pixels)
    script = f"""
import sys, numpy as np, onnxruntime as ort
session = ort.InferenceSession({str(exported / "model.onnx")!r}, providers=["CPUExecutionProvider"])
pixels = np.load({str(exported.parent / "pixels.npy")!r})
one = session.run(["logits"], {{"image": pixels[:1]}})[0]
everything = session.run(["logits"], {{"image": pixels}})[0]
assert one.shape == (1, 10) and everything.shape == (10000, 10)
assert "regcli" not in sys.modules and "torch" not in sys.modules
print((everything.argmax(1) == np.load({str(exported.parent / "labels.npy")!r})).mean())
"""
    np.save(exported.parent / "labels.npy", mnist[1].labels)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(
        evaluate_model(exported, backend="torch", test=mnist[1])[0]["accuracy"]
    )
    assert not list(exported.glob("*.data")) and not list(exported.glob("*.onnx.*"))


def test_metadata_round_trips(exported):
    proto = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    assert "MaxPool" in ops and "Max" not in ops  # torch's pooling, not cpu_ops' fast path
    props = {p.key: p.value for p in proto.metadata_props}
    _, payload = load_model(exported)
    assert props["mode"] == "none" and json.loads(props["config"]) == payload["config"]
    assert float(props["l1"]) == payload["config"]["l1"] and float(props["weight_decay"]) == 0.0
    assert props["reg_scope"] == "weights" and props["seed"] == str(payload["config"]["seed"])
    assert props["class_labels"].split(",") == [str(i) for i in range(10)]
    assert float(props["test_accuracy"]) == payload["final"]["test_accuracy"]
    assert props["test_images"] == "2000"  # QUICK_CONFIG tests on the first 2,000
    assert props["source_sha256"] == sha256_bytes((exported / "model.pt").read_bytes())
    # provenance: the training run's record and the export's own
    run, export = json.loads(props["training_run"]), json.loads(props["export"])
    assert run == payload["run"] and run["device"] == "cpu" and run["group"]["size"] == 1
    assert export["machine"]["cores"] >= 1 and export["versions"]["regcli"]
    assert proto.doc_string.startswith("regcli MNIST digit classifier (none: l1 0, weight decay 0")
    assert "on 2,000 MNIST test images" in proto.doc_string
    assert "0.1307" in props["normalization"] and "0.3081" in props["normalization"]
    assert min(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert (
        graph_input.name == "image"
        and dims[0].dim_param
        and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    )


def test_evaluate_cli_json_for_every_model(exported):
    result = invoke(
        "evaluate",
        "--backend",
        "onnx",
        "--models-dir",
        exported.parent,
        "--json",
        "--data-dir",
        DATA_DIR,
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)
    assert entry["model"] == "quick" and entry["backend"] == "onnx" and entry["total"] == 10_000
    assert 0.9 < entry["accuracy"] < 1 and entry["correct"] == round(entry["accuracy"] * 10_000)
    assert len(entry["per_class"]) == 10 and sum(map(sum, entry["confusion"])) == 10_000
    table = invoke("evaluate", exported, "--data-dir", DATA_DIR)
    assert table.exit_code == 0 and f"{100 * entry['accuracy']:.2f}%" in table.stdout


def test_misclassified_grid_is_the_same_through_both_backends(exported, tmp_path):
    listings = []
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.png"
        result = invoke(
            "misclassified",
            exported,
            "--backend",
            backend,
            "--count",
            "9",
            "--out",
            out,
            "--json",
            "--data-dir",
            DATA_DIR,
        )
        assert result.exit_code == 0, result.output
        assert Image.open(out).size[0] > 300
        (listing,) = json.loads(result.stdout)
        listings.append([(r["index"], r["true"], r["predicted"]) for r in listing["misclassified"]])
    assert listings[0] == listings[1] and len(listings[0]) == 9
    assert all(true != predicted for _, true, predicted in listings[0])


def wrong_shape_onnx(path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "rgb",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, 32, 32])],
    )
    path.write_bytes(onnx.helper.make_model(graph).SerializeToString())


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: (d / "model.onnx").unlink(), "regcli export"),
        (lambda d: (d / "model.onnx").write_bytes(b"garbage" * 100), "not a"),
        (lambda d: wrong_shape_onnx(d / "model.onnx"), "[N, 1, 28, 28]"),
        (lambda d: (d / "model.pt").write_bytes(b"retrained?"), "model.pt"),
    ],
    ids=["missing", "corrupt", "wrong-input-shape", "corrupt-checkpoint"],
)
def test_bad_onnx_files_get_one_line_and_exit_1(exported_copy, tmp_path, breakage, message):
    model_dir = exported_copy
    breakage(model_dir)
    before = snapshot(tmp_path)
    result = invoke("evaluate", model_dir, "--backend", "onnx", "--data-dir", DATA_DIR)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_stale_export_is_refused(exported_copy):
    model_dir = exported_copy
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    payload["final"]["test_accuracy"] = 0.5  # any change to model.pt after the export
    torch.save(payload, model_dir / "model.pt")
    result = invoke("evaluate", model_dir, "--backend", "onnx", "--data-dir", DATA_DIR)
    assert result.exit_code == 1 and "older model.pt" in result.stderr


def test_export_skips_an_up_to_date_file(exported):
    before = (exported / "model.onnx").stat().st_mtime_ns
    result = invoke("export", exported, "--data-dir", DATA_DIR)
    assert result.exit_code == 0 and "up to date" in result.stderr and not result.stdout
    assert (exported / "model.onnx").stat().st_mtime_ns == before


def test_onnx_commands_never_load_pytorch(exported, mnist, tmp_path):
    """The inference commands on the ONNX backend, and `runs`, start without PyTorch's seconds
    of import."""
    np.save(tmp_path / "digits.npy", mnist[1].images[:3])
    script = f"""
import json, sys
from regcli.cli import app
for args in (
    ["evaluate", {str(exported)!r}, "--backend", "onnx", "--data-dir", {str(DATA_DIR)!r}, "--json"],
    ["predict", {str(exported)!r}, {str(tmp_path / "digits.npy")!r}, "--backend", "onnx"],
    ["misclassified", {str(exported)!r}, "--backend", "onnx", "--data-dir", {str(DATA_DIR)!r},
     "--out", {str(tmp_path / "wrong.png")!r}],
    ["runs", "--models-dir", {str(exported.parent)!r}],
):
    try:
        app(args)
    except SystemExit as done:
        assert done.code == 0, args
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"accuracy"' in done.stdout and "digits.npy[2]" in done.stdout  # they all ran
    assert (tmp_path / "wrong.png").is_file()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def without_provenance(path, key="source_sha256"):
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    path.write_bytes(proto.SerializeToString())


@pytest.mark.parametrize("command", ["evaluate", "misclassified", "predict"])
def test_an_onnx_file_of_unknown_origin_is_refused(exported_copy, tmp_path, command):
    without_provenance(exported_copy / "model.onnx")
    np.save(tmp_path / "digits.npy", np.zeros((2, 28, 28), dtype=np.uint8))
    before = snapshot(exported_copy)
    extra = [tmp_path / "digits.npy"] if command == "predict" else ["--data-dir", DATA_DIR]
    result = invoke(command, exported_copy, *extra, "--backend", "onnx")
    one_line_error(result, 1, "does not say which model.pt it came from; run `regcli export")
    assert snapshot(exported_copy) == before
    # export treats it as stale and replaces it
    assert invoke("export", exported_copy, "--data-dir", DATA_DIR).exit_code == 0
    assert (
        invoke(
            "evaluate", exported_copy, "--backend", "onnx", "--data-dir", DATA_DIR, "--quiet"
        ).exit_code
        == 0
    )


@pytest.mark.parametrize(
    ("key", "said"),
    [("training_run", "the run that trained it"), ("export", "the export that wrote it")],
)
def test_an_onnx_file_without_its_full_provenance_is_stale(exported_copy, key, said):
    without_provenance(exported_copy / "model.onnx", key)
    result = invoke("evaluate", exported_copy, "--backend", "onnx", "--data-dir", DATA_DIR)
    one_line_error(result, 1, f"does not say {said}; run `regcli export")
    from regcli.inference.export import up_to_date

    assert not up_to_date(exported_copy)


def test_export_hashes_exactly_the_bytes_it_loaded(exported_copy, monkeypatch):
    """A retrain that replaces model.pt while export runs cannot pair old weights with the new
    file's hash: the hash comes from the bytes that were loaded."""
    import regcli.inference.export as export_module

    real = export_module.load_checkpoint_with_hash

    def load_then_replace(path):
        payload, sha256 = real(path)
        path.write_bytes(path.read_bytes() + b"a retrain replaced me")
        return payload, sha256

    monkeypatch.setattr(export_module, "load_checkpoint_with_hash", load_then_replace)
    assert invoke("export", exported_copy, "--force", "--data-dir", DATA_DIR).exit_code == 0
    one_line_error(
        invoke("evaluate", exported_copy, "--backend", "onnx", "--data-dir", DATA_DIR),
        1,
        "exported from an older model.pt",
    )
