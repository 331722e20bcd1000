"""Export a checkpoint to one self-describing ONNX file, verified against PyTorch.

The graph takes raw pixels (float32 [batch, 1, 28, 28] in [0, 1]; normalization is inside) and
returns logits [batch, 10]; the batch axis is dynamic. The file carries its provenance in
metadata_props: the run record of the model (command, times, machine, versions, code), the
test-set size its accuracy was measured on, the sha256 of exactly the model.pt bytes it was
exported from (so a stale export is caught), and the sha256 of its own content outside the
metadata (so the metadata cannot be copied onto another network: see backends.py). Export holds
the model folder's lock, so a retrain cannot replace model.pt half-way through.
"""

import io
import json
import warnings
from contextlib import redirect_stdout
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import regcli
from regcli.core.config import MNIST_MEAN, MNIST_STD
from regcli.core.errors import RegcliError
from regcli.core.files import write_bytes
from regcli.core.locks import ModelLock
from regcli.core.provenance import run_record, utc_now
from regcli.data.mnist import load_split
from regcli.inference.backends import (
    CONTENT_KEY,
    SOURCE_KEY,
    content_sha256,
    current_onnx_bytes,
    onnx_session,
)
from regcli.inference.scoring import to_unit
from regcli.store.checkpoints import (
    checkpoint_config,
    load_checkpoint,
    load_checkpoint_with_hash,
    model_from_checkpoint,
)
from regcli.store.layout import ONNX_NAME, checkpoint_path


class Exported(StrEnum):
    """What `regcli export` did with a model."""

    up_to_date = "up to date"  # its model.onnx is current: left as it is
    exported = "exported"


INPUT_NAME = "image"  # float32 [batch, 1, 28, 28], pixels in [0, 1], 0 = background
OUTPUT_NAME = "logits"  # float32 [batch, 10], unnormalized class scores (softmax for probs)
OPSET = 18
PARITY_ATOL = 1e-4  # max |logit difference| allowed between onnxruntime and PyTorch
PARITY_BATCHES = (1, 256)  # batch sizes checked at export


def metadata(payload: dict, source_sha256: str, export_record: dict) -> dict[str, str]:
    config = checkpoint_config(payload)
    final = payload["final"]
    tested = config.test_images
    return {
        "regcli_version": regcli.__version__,
        "mode": config.mode,
        "l1": repr(config.l1),
        "weight_decay": repr(config.weight_decay),
        "reg_scope": config.reg_scope,
        "seed": str(config.seed),
        "config": json.dumps(config.as_dict()),
        "normalization": f"inside the graph: (image - {MNIST_MEAN}) / {MNIST_STD}",
        "input": f"{INPUT_NAME}: float32 [batch, 1, 28, 28], pixels in [0, 1], black background",
        "output": f"{OUTPUT_NAME}: float32 [batch, 10], unnormalized scores; softmax gives probs",
        "class_labels": ",".join(str(i) for i in range(10)),
        "test_accuracy": repr(final["test_accuracy"]),
        "test_images": str(tested),
        "training_run": json.dumps(training_run(payload)),
        "export": json.dumps(export_record),
        SOURCE_KEY: source_sha256,
    }


def training_run(payload: dict) -> dict:
    """The checkpoint's run record (format 1 files kept only the device and versions)."""
    return payload.get("run") or {k: payload[k] for k in ("device", "versions") if k in payload}


def doc_string(payload: dict) -> str:
    config = checkpoint_config(payload)
    accuracy = 100 * payload["final"]["test_accuracy"]
    tested = config.test_images
    return (
        f"regcli MNIST digit classifier ({config.mode}: l1 {config.l1:g}, weight decay "
        f"{config.weight_decay:g}, seed {config.seed}, {payload['epochs']} epochs), "
        f"{accuracy:.2f}% on {tested:,} MNIST test images; raw pixels in, logits out."
    )


def to_onnx(model: torch.nn.Module) -> onnx.ModelProto:
    """Trace the eval-mode model with a dynamic batch axis."""
    example = torch.rand(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the exporter is chatty
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(),
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    return program.model_proto


def up_to_date(model_dir: Path) -> bool:
    """Whether model_dir/model.onnx is current (backends.current_onnx: provenance and content)
    and its weights are exactly model.pt's: with PyTorch at hand, a file whose metadata and
    content digest were both forged for another network is caught here and exported again."""
    try:
        graph = onnx.load_from_string(current_onnx_bytes(model_dir))
        payload = load_checkpoint(model_dir)
    except RegcliError:
        return False
    held = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    weights = {
        name: tensor.numpy()
        for name, tensor in payload["state_dict"].items()
        if tensor.is_floating_point()  # BatchNorm's batch counter is not in the graph
    }
    return all(name in held and np.array_equal(held[name], w) for name, w in weights.items())


def export_model(model_dir: Path, *, data_dir: Path | None = None, command: list[str] = ()) -> Path:
    """Write <model_dir>/model.onnx after checking it against PyTorch on real test images."""
    source = checkpoint_path(model_dir)
    started = utc_now()
    images = load_split(data_dir, "test", max(PARITY_BATCHES)).images
    with ModelLock(source.parent, "regcli export"):
        payload, sha256 = load_checkpoint_with_hash(source)  # hashes the bytes it loaded
        model = model_from_checkpoint(payload, source)
        proto = to_onnx(model)
        record = run_record(command, started, "cpu")
        props = metadata(payload, sha256, record)
        onnx.helper.set_model_props(proto, props)
        proto.doc_string = doc_string(payload)
        onnx.checker.check_model(proto, full_check=True)
        # the content's digest is the same with or without metadata, so it can go in there
        props[CONTENT_KEY] = content_sha256(proto.SerializeToString())
        onnx.helper.set_model_props(proto, props)
        serialized = proto.SerializeToString()
        check_parity(model, serialized, images)
        target = source.parent / ONNX_NAME
        write_bytes(target, serialized)
    return target


def check_parity(model: torch.nn.Module, onnx_bytes: bytes, images: np.ndarray) -> None:
    session = onnx_session(onnx_bytes)
    for batch in PARITY_BATCHES:
        pixels = to_unit(images[:batch])
        with torch.inference_mode():
            expected = model.eval()(torch.from_numpy(pixels))
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0])
        if not (torch.isfinite(got).all() and torch.isfinite(expected).all()):
            raise RegcliError(f"ONNX export gives NaN or infinite logits at batch {batch}")
        worst = (got - expected).abs().max().item()
        if not worst <= PARITY_ATOL or not torch.equal(got.argmax(1), expected.argmax(1)):
            raise RegcliError(
                f"ONNX export does not match PyTorch at batch {batch}: max |logit difference| "
                f"{worst:.2e} (allowed {PARITY_ATOL:g}) or a different predicted class"
            )
