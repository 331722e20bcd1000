"""Two interchangeable predictors, PyTorch and onnxruntime: images [B,1,28,28] -> logits [B,10].

Every inference command opens one with `open_predictor(model_dir, backend)` and never needs to
know which it got.
"""

from pathlib import Path

import onnxruntime as ort
import torch

from regcli.artifacts import checkpoint_path, load_model
from regcli.errors import RegcliError
from regcli.evaluate import Predictor, torch_predictor
from regcli.export import ONNX_NAME, sha256_file, source_digest

BACKENDS = ("torch", "onnx")


def onnx_session(model: bytes | str) -> ort.InferenceSession:
    """An onnxruntime session that shares the CPU politely with PyTorch in the same process.

    onnxruntime's worker threads spin while waiting for work by default, which starves PyTorch's
    own threads; with spinning off they sleep, and both backends keep their speed.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    providers = [
        p
        for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
        if p in ort.get_available_providers()
    ]
    return ort.InferenceSession(model, options, providers=providers)


def onnx_predictor(model: Path | bytes, path: Path) -> Predictor:
    """A predictor over an ONNX model (a file, or its bytes read from `path`), shape-checked."""
    try:
        session = onnx_session(model if isinstance(model, bytes) else str(model))
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise RegcliError(f"{path}: not a loadable ONNX model ({message})") from error
    inputs = session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or list(shape[1:]) != [1, 28, 28]:
        raise RegcliError(f"{path}: expects input {shape}, not regcli's [N, 1, 28, 28] image")
    input_name = inputs[0].name

    def predict(images: torch.Tensor) -> torch.Tensor:
        pixels = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, {input_name: pixels})[0])

    return predict


def check_fresh(onnx_path: Path, checkpoint: Path) -> None:
    """Refuse an export made from another model.pt than the one beside it."""
    source = source_digest(onnx_path)
    if source is not None and source != sha256_file(checkpoint):
        raise RegcliError(
            f"{onnx_path} was exported from an older model.pt; "
            f"run `regcli export {onnx_path.parent}` again"
        )


def current_onnx(model_dir: Path) -> Path:
    """model_dir/model.onnx, which must exist and come from the model.pt beside it."""
    checkpoint = checkpoint_path(model_dir)
    onnx_path = checkpoint.parent / ONNX_NAME
    if not onnx_path.is_file():
        raise RegcliError(
            f"{onnx_path} does not exist; run `regcli export {checkpoint.parent}` first"
        )
    check_fresh(onnx_path, checkpoint)
    return onnx_path


def open_predictor(model_dir: Path, backend: str, device: str = "cpu") -> Predictor:
    """The model in model_dir behind the chosen backend."""
    if backend == "torch":
        model, _ = load_model(checkpoint_path(model_dir))
        return torch_predictor(model.to(device))
    if backend == "onnx":
        onnx_path = current_onnx(model_dir)
        return onnx_predictor(onnx_path, onnx_path)
    raise RegcliError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
