"""Held-out handwriting: how well `regcli predict` reads real scans from another population,
and whether the lighting criterion keeps its hands off them while still flattening uneven photos.

    .venv/bin/python benchmarks/heldout.py [MODEL_DIR] [--out benchmarks/heldout-results.json]

In a temporary folder it builds:
  - the UCI optdigits test set (tests/data/digits.csv.gz: 1,797 real 8x8 scans, values 0..16)
    as dark ink on white paper, upscaled to several sides with several resamplings;
  - MNIST test digits as clean scans (dark ink on white paper, some first shrunk to 8 or 10 px),
    and as photos (the recipe of tests/test_predict.py: dark ink on noisy light paper, 300 x 200
    JPEG) lit evenly, with gradients and with shadows.
Every folder is predicted with regcli's own predict code
(regcli.inference.predict.predict_files) and the model's torch backend, three ways: as regcli
reads them now (flattened only where regcli.inference.preprocess.Lighting finds the lighting
uneven), never flattened (regcli before commit 1a649a7) and always flattened from FLATTEN_FROM
px up (commit 1a649a7). The criterion's two statistics
(regcli.inference.preprocess.measure_lighting) are measured on every image. The table is
printed and written, with the thresholds, to the --out JSON file, atomically (by default
benchmarks/heldout-results.json: a name like results-heldout.json would be taken for a GPU
results file by benchmarks/judge.py, which reads benchmarks/results-*.json).
"""

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from regcli.core.errors import RegcliError
from regcli.core.files import write_json
from regcli.core.provenance import machine, versions
from regcli.data.mnist import load_split
from regcli.inference import inputs, preprocess
from regcli.inference.backends import open_predictor
from regcli.inference.predict import predict_files
from regcli.inference.preprocess import measure_lighting, read_digit, to_gray

REPO = Path(__file__).resolve().parents[1]
OPTDIGITS = REPO / "tests" / "data" / "digits.csv.gz"
OUT = REPO / "benchmarks" / "heldout-results.json"
R = Image.Resampling
# held-out scans: (side in px, resampling from 8 x 8)
SCANS = [
    (32, R.NEAREST),
    (48, R.BILINEAR),
    (64, R.BILINEAR),
    (64, R.NEAREST),
    (96, R.BICUBIC),
    (128, R.BICUBIC),
    (200, R.BILINEAR),
    (256, R.LANCZOS),
]
# clean scans of MNIST test digits: (first shrunk to this side in px or None, side in px,
# resampling)
MNIST_SCANS = [
    (8, 64, R.BILINEAR),
    (10, 64, R.BILINEAR),
    (None, 32, R.NEAREST),
    (None, 96, R.BICUBIC),
    (None, 200, R.BICUBIC),
]
PHOTO_SIZE = (300, 200)  # px (width, height): as in tests/test_predict.py
PHOTOS = 200  # MNIST test digits per photo set
JPEG_QUALITY = 90
NOISE = 0.02  # sensor noise of the photos, as a share of full scale
# photo sets: name -> light over the page [H, W] (1 = full light), given the page's pixel grid
LIGHTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "even": lambda ys, xs: np.ones(ys.shape),
    "gradient 40% (x)": lambda ys, xs: 1 - 0.4 * xs / xs.max(),
    "gradient 30% (y)": lambda ys, xs: 1 - 0.3 * ys / ys.max(),
    "shadow 50% (lower left)": lambda ys, xs: 1 - 0.5 * shadow(ys, xs, 180, 20, 60),
    "shadow 30% (top left corner)": lambda ys, xs: 1 - 0.3 * shadow(ys, xs, 0, 0, 60),
    "shadow 40% (over the digit)": lambda ys, xs: 1 - 0.4 * shadow(ys, xs, 100, 150, 60),
}
MODES = ("now", "never", "always")
NAMES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
]  # how lighting is flattened; see the module docstring


def shadow(ys: np.ndarray, xs: np.ndarray, y: float, x: float, sigma: float) -> np.ndarray:
    """A soft round shadow centred at (y, x) px, sigma px wide: 1 at its centre."""
    return np.exp(-((ys - y) ** 2 + (xs - x) ** 2) / (2 * sigma**2))


def optdigits() -> tuple[np.ndarray, np.ndarray]:
    """The shipped optdigits test set: uint8 [1797, 8, 8] values 0..16 and int labels."""
    with gzip.open(OPTDIGITS, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :64].reshape(-1, 8, 8).astype(np.uint8), table[:, 64]


def scan(pixels: np.ndarray, side: int, resample) -> Image.Image:
    """An 8x8 optdigits digit as dark ink on white paper, upscaled to side x side."""
    paper = (255 - pixels / 16 * 255).astype(np.uint8)
    return Image.fromarray(paper).resize((side, side), resample)


def photo(digit: np.ndarray, light: Callable, seed: int) -> Image.Image:
    """An MNIST digit (white on black) as a photo of dark ink on light, noisy paper, lit so."""
    width, height = PHOTO_SIZE
    side = min(width, height)
    glyph = np.asarray(Image.fromarray(digit).resize((side, side), R.BICUBIC))
    coverage = np.zeros((height, width))
    left, top = (width - side) // 2, (height - side) // 2
    coverage[top : top + side, left : left + side] = glyph / 255
    noise = np.random.default_rng(seed).normal(0, NOISE, (height, width))
    page = (0.9 - 0.75 * coverage + noise).clip(0, 1) * 255
    ys, xs = np.mgrid[:height, :width]
    return Image.fromarray((page * light(ys, xs)).clip(0, 255).astype(np.uint8)).convert("RGB")


def build(root: Path) -> list[dict]:
    """Every set's folder under root, as {name, kind, folder, labels}."""
    sets = []

    def add(name: str, kind: str, images, labels, suffix: str = ".png", **options) -> None:
        folder = root / f"set{len(sets):02d}"
        folder.mkdir()
        for i, image in enumerate(images):
            if isinstance(image, Path):  # a file as it is
                shutil.copyfile(image, folder / f"{i:04d}{image.suffix}")
            else:
                image.save(folder / f"{i:04d}{suffix}", **options)
        sets.append({"name": name, "kind": kind, "folder": folder, "labels": labels})

    pixels, labels = optdigits()
    for side, resample in SCANS:
        scans = (scan(digit, side, resample) for digit in pixels)
        add(f"optdigits {side} px {resample.name.lower()}", "clean scan", scans, labels)
    mnist = load_split(REPO / "data", "test", limit=PHOTOS)
    for low, side, resample in MNIST_SCANS:
        scans = (mnist_scan(digit, low, side, resample) for digit in mnist.images)
        shrunk = f"at {low} px, " if low else ""
        add(f"mnist {shrunk}{side} px {resample.name.lower()}", "clean scan", scans, mnist.labels)
    for name, light in LIGHTS.items():
        kind = "evenly lit photo" if name == "even" else "unevenly lit photo"
        photos = (photo(digit, light, i) for i, digit in enumerate(mnist.images))
        add(f"photo {name}", kind, photos, mnist.labels, ".jpg", quality=JPEG_QUALITY)
    samples = sorted((REPO / "samples" / "photos").iterdir())
    truth = np.array([NAMES.index(p.name.split("_")[0]) for p in samples])
    add("samples/photos (committed)", "photo, slightly shaded", samples, truth)
    return sets


def mnist_scan(digit: np.ndarray, low: int | None, side: int, resample) -> Image.Image:
    """An MNIST digit as dark ink on white paper, first shrunk to low x low px (a coarse scan:
    box-averaged, as optdigits was made) if low is given, then resized to side x side."""
    paper = Image.fromarray(255 - digit)
    if low:
        paper = paper.resize((low, low), R.BOX)
    return paper.resize((side, side), resample)


def never_flattened(gray: np.ndarray, source: str = "image") -> np.ndarray:
    """mnist_style as before commit 1a649a7: the lighting is never flattened."""
    gray, border, background = preprocess.ink_bright(gray, source)
    return fitted(preprocess.read_ink(gray, border, background, source), source)


def always_flattened(gray: np.ndarray, source: str = "image") -> np.ndarray:
    """mnist_style as commit 1a649a7 had it: flattened whenever the image is FLATTEN_FROM px."""
    gray, border, background = preprocess.ink_bright(gray, source)
    if max(gray.shape) >= preprocess.FLATTEN_FROM:
        gray, border, background = preprocess.paper_removed(gray)
    return fitted(preprocess.read_ink(gray, border, background, source), source)


def fitted(reading, source: str) -> np.ndarray:
    if isinstance(reading, RegcliError):
        raise reading
    return preprocess.fit_digit(reading, source)


def accuracy(predictor, one: dict, mode: str) -> float:
    """Share of the set's images predicted right (an error row counts as wrong)."""
    styles = {"now": preprocess.mnist_style, "never": never_flattened, "always": always_flattened}
    real = inputs.mnist_style
    inputs.mnist_style = styles[mode]
    rows: list[dict] = []
    try:
        predict_files(predictor, [one["folder"]], on_row=rows.append)
    finally:
        inputs.mnist_style = real
    right = sum(int(r["prediction"]) == one["labels"][int(Path(r["path"]).stem)] for r in rows)
    return right / len(one["labels"])


def statistics(one: dict) -> dict:
    """The criterion on every image of the set: min and max of each statistic, and how many
    images regcli flattens now."""
    measured, flattened = [], 0
    for path in sorted(one["folder"].iterdir()):
        with Image.open(path) as image:
            gray = to_gray(image)
        lighting = measure_lighting(gray)
        measured.append((lighting.disagreement, lighting.flattened_edge))
        try:
            decided = read_digit(gray)[1]
        except RegcliError:  # no digit found: predicted as an error row, not flattened
            decided = None
        flattened += decided is not None and decided.uneven
    values = np.array(measured)
    names = ("disagreement", "flattened_edge")
    spans = {
        n: [round(float(values[:, k].min()), 4), round(float(values[:, k].max()), 4)]
        for k, n in enumerate(names)
    }
    return {**spans, "flattened_now": flattened}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="models/none", type=Path)
    parser.add_argument("--out", default=OUT, type=Path)
    args = parser.parse_args(argv)
    predictor = open_predictor(args.model, backend="torch")
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="regcli-heldout-") as root:
        for one in build(Path(root)):
            row = {"set": one["name"], "kind": one["kind"], "images": len(one["labels"])}
            row["accuracy"] = {mode: round(accuracy(predictor, one, mode), 4) for mode in MODES}
            row.update(statistics(one))
            results.append(row)
            show(row)
    thresholds = {
        "DISAGREEMENT (flattened if disagreement >= this)": preprocess.DISAGREEMENT,
        "EDGE_CLEAR (and flattened_edge <= this)": preprocess.EDGE_CLEAR,
        "FLATTEN_FROM (px: images at least this large)": preprocess.FLATTEN_FROM,
    }
    write_json(
        args.out,
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(
                ["benchmarks/heldout.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            "model": str(args.model),
            "backend": "torch",
            "accuracy_modes": {
                "now": "regcli now (the lighting criterion)",
                "never": "never flattened (before commit 1a649a7)",
                "always": "always flattened from FLATTEN_FROM px (commit 1a649a7)",
            },
            "thresholds": thresholds,
            "sets": results,
            "seconds": round(time.perf_counter() - started, 1),
            "machine": machine(),
            "versions": versions(),
        },
    )
    print(f"wrote {args.out}")


def show(row: dict) -> None:
    accuracy = "  ".join(f"{mode} {100 * row['accuracy'][mode]:5.1f}%" for mode in MODES)
    spans = "  ".join(
        f"{n} {row[n][0]:.3f}..{row[n][1]:.3f}" for n in ("disagreement", "flattened_edge")
    )
    flattened = f"flattened {row['flattened_now']}/{row['images']}"
    print(f"{row['set']:34s} {accuracy}  {spans}  {flattened}", flush=True)


if __name__ == "__main__":
    main()
