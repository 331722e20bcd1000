import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from regcli.artifacts import sha256_file
from regcli.backends import open_predictor
from regcli.checkpoints import load_model
from regcli.cli import app
from regcli.scoring import to_unit
from regcli.export import export
from regcli.inference import evaluate_model
from tests.conftest import DATA_DIR, snapshot

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def exported(quick_model, tmp_path_factory):
    """A copy of the quick model with its model.onnx."""
    model_dir = tmp_path_factory.mktemp("exported") / "quick"
    shutil.copytree(quick_model, model_dir)
    export(model_dir, DATA_DIR)
    return model_dir


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_logits_match_pytorch(exported, mnist, batch):
    images = to_unit(mnist[1].images[100 : 100 + batch])
    torch_logits = open_predictor(exported, "torch")(images)
    onnx_logits = open_predictor(exported, "onnx")(images)
    assert onnx_logits.shape == (batch, 10)
    assert np.allclose(onnx_logits, torch_logits, atol=1e-4, rtol=0)


def test_both_backends_agree_on_the_full_test_set(exported, mnist):
    test = mnist[1]
    torch_summary, torch_scores = evaluate_model(exported, "torch", test)
    onnx_summary, onnx_scores = evaluate_model(exported, "onnx", test)
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
    _, payload = load_model(exported)
    assert float(done.stdout) == pytest.approx(
        evaluate_model(exported, "torch", mnist[1])[0]["accuracy"]
    )
    assert not list(exported.glob("*.data")) and not list(exported.glob("*.onnx.*"))


def test_metadata_round_trips(exported):
    proto = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    _, payload = load_model(exported)
    assert props["mode"] == payload["mode"] == "none"
    assert float(props["l1"]) == payload["l1"] and float(props["weight_decay"]) == 0.0
    assert props["reg_scope"] == "weights"
    assert props["class_labels"].split(",") == [str(i) for i in range(10)]
    assert float(props["test_accuracy"]) == payload["final"]["test_accuracy"]
    assert props["source_sha256"] == sha256_file(exported / "model.pt")
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


def digit_pngs(folder, test, count):
    """MNIST test digits as a person might photograph them: 84x84 RGB, every third inverted."""
    folder.mkdir()
    for i in range(count):
        pixels = test.images[i]
        if i % 3 == 0:
            pixels = 255 - pixels
        image = Image.fromarray(pixels).resize((84, 84), Image.Resampling.BILINEAR)
        image.convert("RGB").save(folder / f"{i:04d}.png")


def test_predict_on_real_images_agrees_with_evaluate(exported, mnist, tmp_path):
    count = 300
    digit_pngs(tmp_path / "digits", mnist[1], count)
    out = tmp_path / "results.json"
    result = invoke("predict", exported, tmp_path / "digits", "--backend", "onnx", "--out", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["predictions"]
    assert len(rows) == count and len(result.stdout.strip().splitlines()) == count
    _, scores = evaluate_model(exported, "onnx", mnist[1])
    predicted = np.array([r["prediction"] for r in sorted(rows, key=lambda r: r["path"])])
    agreement = (predicted == scores.predicted[:count]).mean()
    assert agreement >= 0.98
    assert all(len(r["top3"]) == 3 and r["top3"][0][0] == r["prediction"] for r in rows)


def test_predict_npy_and_csv_output(exported, mnist, tmp_path):
    np.save(tmp_path / "batch.npy", mnist[1].images[:5])
    np.save(tmp_path / "one.npy", mnist[1].images[5].astype(np.float32) / 255)
    out = tmp_path / "results.csv"
    result = invoke("predict", exported, tmp_path / "batch.npy", tmp_path / "one.npy", "--out", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "path,prediction,probability,top3" and len(lines) == 7
    _, scores = evaluate_model(exported, "torch", mnist[1].head(6))
    assert [int(line.split(",")[1]) for line in lines[1:]] == scores.predicted.tolist()


def test_unreadable_inputs_are_reported_and_the_rest_predicted(exported, mnist, tmp_path):
    Image.fromarray(mnist[1].images[0]).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 32, 32), dtype=np.uint8))
    result = invoke(
        "predict",
        exported,
        tmp_path / "good.png",
        tmp_path / "broken.png",
        tmp_path / "wrong.npy",
        tmp_path / "missing.png",
    )
    assert result.exit_code == 1
    assert len(result.stdout.strip().splitlines()) == 1 and "good.png" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
    assert "broken.png" in errors[0] and "(N, 28, 28)" in errors[1] and "missing.png" in errors[2]
    assert "Traceback" not in result.output


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
def test_bad_onnx_files_get_one_line_and_exit_1(exported, tmp_path, breakage, message):
    model_dir = tmp_path / "broken"
    shutil.copytree(exported, model_dir)
    breakage(model_dir)
    before = snapshot(tmp_path)
    result = invoke("evaluate", model_dir, "--backend", "onnx", "--data-dir", DATA_DIR)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_stale_export_is_refused(exported, quick_model, tmp_path):
    model_dir = tmp_path / "stale"
    shutil.copytree(exported, model_dir)
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    payload["final"]["test_accuracy"] = 0.5  # any change to model.pt after the export
    torch.save(payload, model_dir / "model.pt")
    result = invoke("evaluate", model_dir, "--backend", "onnx", "--data-dir", DATA_DIR)
    assert result.exit_code == 1 and "older model.pt" in result.stderr


def test_export_skips_an_up_to_date_file(exported):
    before = (exported / "model.onnx").stat().st_mtime_ns
    result = invoke("export", exported, "--data-dir", DATA_DIR)
    assert result.exit_code == 0 and "up to date" in result.stdout
    assert (exported / "model.onnx").stat().st_mtime_ns == before


def test_onnx_commands_never_load_pytorch(exported, mnist, tmp_path):
    """The inference commands on the ONNX backend start without PyTorch's seconds of import."""
    np.save(tmp_path / "digits.npy", mnist[1].images[:3])
    script = f"""
import json, sys
from regcli.cli import app
for args in (
    ["evaluate", {str(exported)!r}, "--backend", "onnx", "--data-dir", {str(DATA_DIR)!r}, "--json"],
    ["predict", {str(exported)!r}, {str(tmp_path / "digits.npy")!r}, "--backend", "onnx"],
    ["misclassified", {str(exported)!r}, "--backend", "onnx", "--data-dir", {str(DATA_DIR)!r},
     "--out", {str(tmp_path / "wrong.png")!r}],
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
