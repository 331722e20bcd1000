"""What a model's ONNX file weighs, as it is and zipped, with any weights swapped in: how pruning
shows on disk (a zero weight costs its four bytes in the file, next to nothing once zipped).

`swap_weights` is the one place that copies a state's tensors into an ONNX graph's initializers;
the pruned predictors (studies/weights.py) and the sizes here both use it.
"""

import io
import zipfile
from pathlib import Path

import onnx
from onnx import numpy_helper

from regcli.core.errors import RegcliError
from regcli.inference.backends import current_onnx_bytes
from regcli.store.layout import ONNX_NAME


def zipped_bytes(data: bytes) -> int:
    """The size of `data` as the one file of a zip archive (deflate, level 9)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(ONNX_NAME, data)
    return buffer.tell()


def file_sizes(data: bytes) -> dict:
    """An ONNX file's size in bytes, as it is and zipped."""
    return {"onnx_bytes": len(data), "zipped_bytes": zipped_bytes(data)}


def graph_of(model_dir: Path, model) -> onnx.ModelProto:
    """The model's ONNX graph: its current export, else one exported in memory (nothing is
    written)."""
    try:
        return onnx.load_from_string(current_onnx_bytes(model_dir))
    except RegcliError:
        from regcli.inference.export import to_onnx  # PyTorch's exporter: only when needed

        return to_onnx(model)


def swap_weights(graph: onnx.ModelProto, state: dict, where: str = "the ONNX graph") -> None:
    """Copy `state`'s tensors (by state-dict name) into the graph's initializers, in place."""
    held = {i.name: i for i in graph.graph.initializer}
    for name, value in state.items():
        if name not in held:
            raise RegcliError(f"{where} has no weight named {name}; export it again")
        held[name].CopyFrom(numpy_helper.from_array(value.detach().cpu().numpy(), name))


def sizes_with(graph: onnx.ModelProto, state: dict) -> dict:
    """The graph's size, and zipped, with `state`'s weights in place of its own (the graph
    itself is left as it was)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(graph)
    swap_weights(copy, state)
    return file_sizes(copy.SerializeToString())
