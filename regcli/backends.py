"""Two interchangeable predictors, PyTorch and onnxruntime: images [B,1,28,28] -> logits [B,10].

Every inference command opens one with `open_predictor(model_dir, backend)` and never needs to
know which it got. The ONNX side never imports PyTorch (about 2 s of start-up on a small CPU):
the torch backend loads it only when asked for.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from regcli.artifacts import ONNX_NAME, checkpoint_path, sha256_file
from regcli.errors import RegcliError
from regcli.scoring import Predictor

BACKENDS = ("torch", "onnx")
SOURCE_KEY = "source_sha256"  # ONNX metadata: sha256 of the model.pt it was exported from


def onnx_session(model: bytes | str) -> ort.InferenceSession:
    """An onnxruntime session that shares the CPU politely with PyTorch in the same process.

    onnxruntime's worker threads spin while waiting for work by default, which starves PyTorch's
    threads when the two take turns (export's parity check, pruning, comparing backends); with
    spinning off they sleep. Measured on the 2-core machine, spinning gave onnxruntime alone no
    consistent gain either.
    """
    options = ort.SessionOptions()
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


def open_onnx(model: Path | bytes, path: Path) -> ort.InferenceSession:
    """A session over an ONNX model (a file, or its bytes read from `path`), checked to take
    regcli's image input."""
    try:
        session = onnx_session(model if isinstance(model, bytes) else str(model))
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise RegcliError(f"{path}: not a loadable ONNX model ({message})") from error
    inputs = session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or list(shape[1:]) != [1, 28, 28]:
        raise RegcliError(f"{path}: expects input {shape}, not regcli's [N, 1, 28, 28] image")
    return session


def onnx_predictor(session: ort.InferenceSession) -> Predictor:
    input_name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(images, dtype=np.float32)
        return session.run(None, {input_name: pixels})[0]

    return predict


def current_onnx(model_dir: Path) -> ort.InferenceSession:
    """model_dir/model.onnx, which must exist and come from the model.pt beside it."""
    checkpoint = checkpoint_path(model_dir)
    onnx_path = checkpoint.parent / ONNX_NAME
    if not onnx_path.is_file():
        raise RegcliError(
            f"{onnx_path} does not exist; run `regcli export {checkpoint.parent}` first"
        )
    session = open_onnx(onnx_path, onnx_path)
    if exported_from(session) not in (None, sha256_file(checkpoint)):
        raise RegcliError(
            f"{onnx_path} was exported from an older model.pt; "
            f"run `regcli export {checkpoint.parent}` again"
        )
    return session


def exported_from(session: ort.InferenceSession) -> str | None:
    """sha256 of the model.pt the session's model was exported from (None if it does not say)."""
    return session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)


def is_current(model_dir: Path) -> bool:
    """Whether model_dir/model.onnx is loadable and says it came from the model.pt beside it."""
    try:  # current_onnx lets an export without provenance through; `export` redoes those
        return exported_from(current_onnx(model_dir)) is not None
    except RegcliError:  # missing, unreadable or stale: export it again
        return False


def open_predictor(model_dir: Path, backend: str, device: str = "cpu") -> Predictor:
    """The model in model_dir behind the chosen backend."""
    if backend == "torch":
        from regcli.checkpoints import load_model
        from regcli.model import torch_predictor

        model, _ = load_model(checkpoint_path(model_dir))
        return torch_predictor(model.to(device))
    if backend == "onnx":
        return onnx_predictor(current_onnx(model_dir))
    raise RegcliError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
