"""MNIST from the original IDX files, read and verified here, returned as numpy arrays.

We parse IDX ourselves rather than through torchvision so that a truncated, foreign or
tampered file is a clear error instead of a silent misread: the header (magic number, dimensions)
must match the byte count, and the content must match the md5 of the genuine file. numpy, not
torch, so that ONNX inference runs without loading PyTorch; the trainer moves them to its device.
"""

import gzip
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regcli.errors import RegcliError

DATA_DIR_ENV = "REGCLI_DATA_DIR"
IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST uses

# name of the uncompressed IDX file -> md5 of its content (the widely published originals)
GENUINE_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, 28, 28], 0 = background (a tensor on the training device)
    labels: np.ndarray  # int64 [N], 0..9

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.images[:n], self.labels[:n])


def parse_idx(raw: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode one IDX file's bytes into a uint8 array of the shape its header declares."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise RegcliError(f"{source}: not an IDX file (bad magic number)")
    if raw[2] != IDX_UBYTE:
        raise RegcliError(f"{source}: IDX type 0x{raw[2]:02x} is not unsigned bytes")
    ndim = raw[3]
    if ndim == 0:
        raise RegcliError(f"{source}: IDX header declares no dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise RegcliError(f"{source}: truncated IDX header")
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header_size + math.prod(shape)
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing bytes"
        raise RegcliError(
            f"{source}: {kind}: header declares shape {tuple(shape)} ({expected:,} bytes), "
            f"file has {len(raw):,} bytes"
        )
    # a writable copy: torch.from_numpy warns about read-only memory
    return np.frombuffer(bytearray(raw[header_size:]), dtype=np.uint8).reshape(shape)


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or not, and check its uncompressed content against a md5."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise RegcliError(f"{path}: cannot read ({error})") from error
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise RegcliError(f"{path}: content is not the genuine MNIST file (md5 mismatch)")
    return parse_idx(raw, str(path))


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    """--data-dir, else $REGCLI_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data")


def load_split(data_dir: Path | str | None, split: str, limit: int | None = None) -> Split:
    """Load the `train` or `test` split from data_dir, downloading it only if it is absent."""
    root = resolve_data_dir(data_dir)
    paths = [_find(root, name) for name in SPLIT_FILES[split]]
    if None in paths:
        _download(root)
        paths = [_find(root, name) for name in SPLIT_FILES[split]]
    images_path, labels_path = paths
    images = read_idx(images_path, GENUINE_MD5[images_path.name.removesuffix(".gz")])
    labels = read_idx(labels_path, GENUINE_MD5[labels_path.name.removesuffix(".gz")])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RegcliError(f"{root}: images and labels of the {split} split do not match")
    return Split(images, labels.astype(np.int64)).head(limit)


def _find(root: Path, name: str) -> Path | None:
    """Where torchvision keeps the files (MNIST/raw), or the folder itself; .gz or not."""
    for folder in (root / "MNIST" / "raw", root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _download(root: Path) -> None:
    expected = ", ".join(f"{name}.gz" for names in SPLIT_FILES.values() for name in names)
    try:
        from torchvision.datasets import MNIST

        MNIST(str(root), train=True, download=True)
        MNIST(str(root), train=False, download=True)
    except Exception as error:  # any failure (offline, disk, mirror) ends the same way
        raise RegcliError(
            f"MNIST not found in {root / 'MNIST' / 'raw'} and the download failed ({error}); "
            f"put {expected} there, or point --data-dir or ${DATA_DIR_ENV} at them"
        ) from error
