"""Export a checkpoint to one self-describing ONNX file, verified against PyTorch.

The graph takes raw pixels (float32 [batch, 1, 28, 28] in [0, 1]; normalization is inside) and
returns logits [batch, 10]; the batch axis is dynamic. The file carries its provenance in
metadata_props, including the sha256 of the model.pt it came from, so a stale export is caught.
"""

import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import torch

import regcli
from regcli.artifacts import ONNX_NAME, checkpoint_path, sha256_file, write_bytes
from regcli.backends import SOURCE_KEY, onnx_session
from regcli.checkpoints import load_model
from regcli.config import MNIST_MEAN, MNIST_STD
from regcli.data import load_split
from regcli.errors import RegcliError
from regcli.scoring import to_unit

INPUT_NAME = "image"  # float32 [batch, 1, 28, 28], pixels in [0, 1], 0 = background
OUTPUT_NAME = "logits"  # float32 [batch, 10], unnormalized class scores (softmax for probs)
OPSET = 18
PARITY_ATOL = 1e-4  # max |logit difference| allowed between onnxruntime and PyTorch
PARITY_BATCHES = (1, 256)  # batch sizes checked at export


def metadata(payload: dict, source: Path) -> dict[str, str]:
    final = payload["final"]
    return {
        "regcli_version": regcli.__version__,
        "mode": payload["mode"],
        "l1": repr(payload["l1"]),
        "weight_decay": repr(payload["weight_decay"]),
        "reg_scope": payload["reg_scope"],
        "normalization": f"inside the graph: (image - {MNIST_MEAN}) / {MNIST_STD}",
        "input": f"{INPUT_NAME}: float32 [batch, 1, 28, 28], pixels in [0, 1], black background",
        "output": f"{OUTPUT_NAME}: float32 [batch, 10], unnormalized scores; softmax gives probs",
        "class_labels": ",".join(str(i) for i in range(10)),
        "test_accuracy": repr(final["test_accuracy"]),
        SOURCE_KEY: sha256_file(source),
    }


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


def export(model_dir: Path, data_dir: Path | None = None) -> Path:
    """Write <model_dir>/model.onnx after checking it against PyTorch on real test images."""
    source = checkpoint_path(model_dir)
    model, payload = load_model(source)
    proto = to_onnx(model)
    onnx.helper.set_model_props(proto, metadata(payload, source))
    onnx.checker.check_model(proto, full_check=True)
    serialized = proto.SerializeToString()
    check_parity(model, serialized, load_split(data_dir, "test", max(PARITY_BATCHES)).images)
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
        worst = (got - expected).abs().max().item()
        if worst > PARITY_ATOL or not torch.equal(got.argmax(1), expected.argmax(1)):
            raise RegcliError(
                f"ONNX export does not match PyTorch at batch {batch}: max |logit difference| "
                f"{worst:.2e} (allowed {PARITY_ATOL:g}) or a different predicted class"
            )
