"""Two interchangeable predictors, PyTorch and onnxruntime: images [B,1,28,28] -> logits [B,10].

Every inference command opens one with `open_predictor(model_dir, backend=...)` and never needs to
know which it got. The ONNX side never imports PyTorch (about 2 s of start-up on a small CPU):
the torch backend loads it only when asked for.

An ONNX file is used only if it says, in its metadata, that it was exported by regcli from the
very model.pt beside it (its sha256): a file without that provenance, or from an older model.pt,
is refused with the advice to run `regcli export`.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from regcli.artifacts import ONNX_NAME, checkpoint_path, sha256_bytes
from regcli.config import NUM_CLASSES, SIDE, Backend
from regcli.errors import RegcliError, first_line
from regcli.scoring import Predictor

SOURCE_KEY = "source_sha256"  # ONNX metadata: sha256 of the model.pt it was exported from
FLOAT = "tensor(float)"


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
    regcli's image and give ten logits per image."""
    try:
        session = onnx_session(model if isinstance(model, bytes) else str(model))
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise RegcliError(f"{path}: not a loadable ONNX model ({first_line(error)})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or list(shape[1:]) != [1, SIDE, SIDE]:
        raise RegcliError(f"{path}: expects input {shape}, not regcli's [N, 1, 28, 28] image")
    if inputs[0].type != FLOAT:
        raise RegcliError(f"{path}: expects {inputs[0].type} input, not regcli's float32 image")
    if len(outputs) != 1:
        raise RegcliError(f"{path}: has {len(outputs)} outputs, not regcli's one (logits)")
    out_shape = outputs[0].shape
    if len(out_shape) != 2 or out_shape[1] != NUM_CLASSES or outputs[0].type != FLOAT:
        raise RegcliError(
            f"{path}: gives {outputs[0].type} {out_shape}, not regcli's float32 [N, 10] logits"
        )
    return session


def onnx_predictor(session: ort.InferenceSession, path: Path | str = ONNX_NAME) -> Predictor:
    input_name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(images, dtype=np.float32)
        try:
            logits = session.run(None, {input_name: pixels})[0]
        except Exception as error:
            raise RegcliError(f"{path}: inference failed ({first_line(error)})") from None
        if logits.shape != (len(pixels), NUM_CLASSES):
            raise RegcliError(
                f"{path}: gave logits of shape {logits.shape} for {len(pixels)} images"
            )
        return logits

    return predict


def exported_from(session: ort.InferenceSession) -> str | None:
    """sha256 of the model.pt the session's model was exported from (None if it does not say)."""
    return session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)


def current_onnx(model_dir: Path) -> ort.InferenceSession:
    """model_dir/model.onnx, which must exist and say it came from the model.pt beside it."""
    checkpoint = checkpoint_path(model_dir)
    onnx_path = checkpoint.parent / ONNX_NAME
    advice = f"run `regcli export {checkpoint.parent}`"
    if not onnx_path.is_file():
        raise RegcliError(f"{onnx_path} does not exist; {advice} first")
    session = open_onnx(onnx_path, onnx_path)
    source = exported_from(session)
    if source is None:
        raise RegcliError(f"{onnx_path} does not say which model.pt it came from; {advice}")
    if source != sha256_bytes(checkpoint.read_bytes()):
        raise RegcliError(f"{onnx_path} was exported from an older model.pt; {advice} again")
    return session


def is_current(model_dir: Path) -> bool:
    """Whether model_dir/model.onnx loads and came from the model.pt beside it."""
    try:
        current_onnx(model_dir)
        return True
    except RegcliError:  # missing, unreadable, stale or of unknown origin: export it again
        return False


def open_predictor(model_dir: Path, *, backend: str, device: str = "cpu") -> Predictor:
    """The model in model_dir behind the chosen backend."""
    if backend == Backend.torch:
        from regcli.checkpoints import load_model
        from regcli.model import torch_predictor

        model, _ = load_model(checkpoint_path(model_dir))
        return torch_predictor(model.to(device))
    if backend == Backend.onnx:
        return onnx_predictor(current_onnx(model_dir), Path(model_dir) / ONNX_NAME)
    raise RegcliError(f"unknown backend {backend!r}; choose one of {', '.join(Backend)}")
