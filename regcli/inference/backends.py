"""Two interchangeable predictors, PyTorch and onnxruntime: images [B,1,28,28] -> logits [B,10].

Every inference command opens one with `open_predictor(model_dir, backend=...)` and never needs to
know which it got. The ONNX side never imports PyTorch (about 2 s of start-up on a small CPU):
the torch backend loads it only when asked for.

An ONNX file is used only if its metadata says that regcli exported it from the very model.pt
beside it (that file's sha256), and that the file's content is what was exported: the sha256
of everything in it but its metadata (graph, weights, opsets, functions) is stored in the
metadata and recomputed on every load, so metadata copied onto another network is refused. A
file without that provenance, from an older model.pt, or altered, is refused with the advice to
run `regcli export`. Both backends refuse a model whose logits are NaN or infinite.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from regcli.core.config import NUM_CLASSES, SIDE, Backend
from regcli.core.errors import RegcliError, first_line
from regcli.core.files import MODEL_FILE_BYTES, FileProblem, read_bytes, sha256_file
from regcli.inference.scoring import Predictor
from regcli.store.layout import ONNX_NAME, checkpoint_path

SOURCE_KEY = "source_sha256"  # ONNX metadata: sha256 of the model.pt it was exported from
CONTENT_KEY = "content_sha256"  # ONNX metadata: sha256 of the file's content (see content_sha256)
# the rest of the provenance every export writes (export.metadata): a file without any is stale
PROVENANCE_KEYS = {
    "training_run": "the run that trained it",
    "export": "the export that wrote it",
    "test_images": "the test set it was measured on",
    "config": "its training settings",
}
# ModelProto fields outside the computation: doc_string (6) and metadata_props (14)
DESCRIPTIVE_FIELDS = (6, 14)
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


def finite(predict: Predictor, path: Path | str) -> Predictor:
    """The predictor, refusing logits that are NaN or infinite (argmax would read them as 0)."""

    def checked(images: np.ndarray) -> np.ndarray:
        logits = predict(images)
        bad = int((~np.isfinite(logits)).any(1).sum())
        if bad:
            raise RegcliError(
                f"{path}: gives NaN or infinite logits for {bad} of {len(logits)} images; the "
                "model is broken (train or export it again)"
            )
        return logits

    return checked


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


def varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position


def top_level_fields(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, its bytes, tag included) of each top-level field of a protobuf message."""
    position = 0
    while position < len(data):
        start = position
        tag, position = varint(data, position)
        wire = tag & 7
        if wire == 0:
            _, position = varint(data, position)
        elif wire == 2:
            length, position = varint(data, position)
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
        if position > len(data):
            raise ValueError("truncated")
        yield tag >> 3, data[start:position]


def content_sha256(onnx_bytes: bytes) -> str:
    """sha256 of an ONNX file's content: every top-level field but its metadata and doc string,
    as serialized (adding metadata never changes it; changing any weight or node does)."""
    digest = hashlib.sha256()
    for number, raw in top_level_fields(onnx_bytes):
        if number not in DESCRIPTIVE_FIELDS:
            digest.update(raw)
    return digest.hexdigest()


def provenance(session: ort.InferenceSession) -> dict[str, str]:
    """The session's regcli metadata (empty for a file another tool wrote)."""
    return session.get_modelmeta().custom_metadata_map


def current_onnx(model_dir: Path) -> ort.InferenceSession:
    """model_dir/model.onnx, which must exist, say it came from the model.pt beside it, and hold
    the very content that was exported."""
    return checked_onnx(model_dir)[0]


def current_onnx_bytes(model_dir: Path) -> bytes:
    """The exact bytes of model_dir/model.onnx that current_onnx checked (read once)."""
    return checked_onnx(model_dir)[1]


def checked_onnx(model_dir: Path) -> tuple[ort.InferenceSession, bytes]:
    checkpoint = checkpoint_path(model_dir)
    onnx_path = checkpoint.parent / ONNX_NAME
    advice = f"run `regcli export {checkpoint.parent}`"
    if not onnx_path.is_file():
        raise RegcliError(f"{onnx_path} does not exist; {advice} first")
    try:
        data = read_bytes(onnx_path, MODEL_FILE_BYTES)
    except FileProblem as error:
        raise RegcliError(f"{error}; {advice}") from None
    session = open_onnx(data, onnx_path)
    metadata = provenance(session)
    source, content = metadata.get(SOURCE_KEY), metadata.get(CONTENT_KEY)
    if source is None or content is None:
        what = "which model.pt it came from" if source is None else "what content it holds"
        raise RegcliError(f"{onnx_path} does not say {what}; {advice}")
    missing = [what for key, what in PROVENANCE_KEYS.items() if not metadata.get(key)]
    if missing:
        raise RegcliError(f"{onnx_path} does not say {', '.join(missing)}; {advice} again")
    if source != sha256_file(checkpoint):
        raise RegcliError(f"{onnx_path} was exported from an older model.pt; {advice} again")
    try:
        held = content_sha256(data)
    except ValueError as error:
        raise RegcliError(f"{onnx_path}: not a well-formed ONNX file ({error}); {advice}") from None
    if content != held:
        raise RegcliError(
            f"{onnx_path}: its graph and weights are not the ones its metadata was written for "
            f"(an altered file, or metadata copied from another export); {advice} again"
        )
    return session, data


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
        from regcli.nn.model import torch_predictor
        from regcli.store.checkpoints import load_model

        path = checkpoint_path(model_dir)
        model, _ = load_model(path)
        return finite(torch_predictor(model.to(device)), path)
    if backend == Backend.onnx:
        path = Path(model_dir) / ONNX_NAME
        return finite(onnx_predictor(current_onnx(model_dir), path), path)
    raise RegcliError(f"unknown backend {backend!r}; choose one of {', '.join(Backend)}")
