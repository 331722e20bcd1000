"""What the predict tests share: the committed model as an onnxruntime predictor, the MNIST test
split, the held-out optdigits scans, and builders of photos, scans and hostile files."""

import csv
import gzip
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from regcli.data.mnist import load_split
from regcli.inference.backends import open_predictor
from regcli.inference.predict import predict_files
from tests.conftest import DATA_DIR, REPO, deadline

MODEL = REPO / "models" / "none" / "model.onnx"


SAMPLES = REPO / "samples"


OPTDIGITS = REPO / "tests" / "data" / "digits.csv.gz"  # real held-out scans: see its README


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def predictor():
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    return lambda images: session.run(None, {"image": images})[0]


@pytest.fixture(scope="module")
def torch_predictor():
    return open_predictor(REPO / "models" / "none", backend="torch")


@pytest.fixture(scope="module")
def test_split():
    return load_split(DATA_DIR, "test")


@pytest.fixture(scope="module")
def optdigits():
    """The UCI optdigits test set: uint8 [1797, 8, 8] ink counts 0..16, and the labels."""
    with gzip.open(OPTDIGITS, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :64].reshape(-1, 8, 8).astype(np.uint8), table[:, 64]


def scan(pixels: np.ndarray, side: int, resample, scale: int = 16) -> Image.Image:
    """Ink values 0..scale as a clean scan: dark ink on white paper, resized to side x side."""
    paper = (255 - pixels / scale * 255).astype(np.uint8)
    return Image.fromarray(paper).resize((side, side), resample)


def photo(digit: np.ndarray, size=(120, 90)) -> Image.Image:
    """An MNIST digit as a photo: dark ink on light, noisy paper, larger and not square."""
    width, height = size
    side = min(width, height)
    glyph = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
    coverage = np.zeros((height, width))
    left, top = (width - side) // 2, (height - side) // 2
    coverage[top : top + side, left : left + side] = glyph / 255
    noise = np.random.default_rng(0).normal(0, 0.02, (height, width))
    gray = 0.9 - 0.75 * coverage + noise
    return Image.fromarray((gray.clip(0, 1) * 255).round().astype(np.uint8)).convert("RGB")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header declares width x height gray pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width + 1) * 8)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 28 28
%%EndComments
newpath 4 4 moveto 24 24 lineto stroke
showpage
%%EOF
"""


def run(predictor, paths, out=None, **options):
    """predict_files, collecting what it reports; (predicted, failed, rows, failures)."""
    rows, failures = [], []
    with deadline(20, "blocked on a FIFO?"):
        counts = predict_files(
            predictor, paths, out, on_row=rows.append,
            on_failure=lambda path, message: failures.append((path, message)), **options,
        )  # fmt: skip
    return *counts, rows, failures


def read_out(out: Path) -> list[dict]:
    """One dict per input row of a CSV or JSON result file."""
    if out.suffix == ".json":
        data = json.loads(out.read_text(encoding="utf-8"))
        return data["predictions"] + data["failures"]
    with out.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
