"""Turn real-world digit images into MNIST-style 28x28 inputs, the way MNIST itself was made.

MNIST digits are white ink on black, scaled to fit a 20x20 box with their aspect ratio kept,
then placed in a 28x28 image so that their centre of mass is at the centre. Photos and scans are
usually dark ink on a light background, of any size and colour: we convert them to grayscale,
invert them when the background is light, stretch background-to-ink to 0..1, crop to the ink and
then do what MNIST did.
"""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from regcli.config import SIDE
from regcli.errors import RegcliError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
ARRAY_SUFFIX = ".npy"
BOX = 20  # the digit is fitted into BOX x BOX, as in MNIST
INK_THRESHOLD = 0.1  # on the stretched 0..1 scale: what counts as ink when cropping


def collect(paths: list[Path]) -> list[Path]:
    """Files given directly, plus every image or .npy file under the folders given (sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | {ARRAY_SUFFIX}
            )
        else:
            found.append(path)  # a missing or odd file is reported when it is read
    return found


def load(path: Path) -> list[tuple[str, np.ndarray]]:
    """(label, float32 [28, 28] in [0, 1]) for each image in the file; RegcliError if unusable."""
    if path.suffix.lower() == ARRAY_SUFFIX:
        return load_array(path)
    try:
        with Image.open(path) as image:
            image.load()
            gray = to_gray(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise RegcliError(f"{path}: cannot read as an image ({error})") from error
    return [(str(path), mnist_style(gray, str(path)))]


def load_array(path: Path) -> list[tuple[str, np.ndarray]]:
    """A .npy of MNIST-format digits, (28, 28) or (N, 28, 28); uint8 0..255 or float 0..1."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise RegcliError(f"{path}: cannot read as a .npy array ({error})") from error
    if array.ndim == 2:
        array = array[None]
    if (
        array.ndim != 3
        or array.shape[1:] != (SIDE, SIDE)
        or not np.issubdtype(array.dtype, np.number)
    ):
        raise RegcliError(f"{path}: array of shape {array.shape}, expected (N, 28, 28) or (28, 28)")
    pixels = array.astype(np.float32)
    if array.dtype == np.uint8 or pixels.max(initial=0) > 1:
        pixels /= 255
    return [(f"{path}[{i}]", p) for i, p in enumerate(np.clip(pixels, 0, 1))]


def to_gray(image: Image.Image) -> np.ndarray:
    """Any PIL image -> float32 [H, W] in [0, 1]; transparency becomes background."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        alpha = rgba[..., 3]
        luminance = np.asarray(image.convert("RGBA").convert("L"), dtype=np.float32) / 255
        # put the visible strokes on a background that contrasts with them
        ink_is_dark = (luminance * alpha).sum() / max(alpha.sum(), 1e-6) < 0.5
        background = 1.0 if ink_is_dark else 0.0
        return luminance * alpha + background * (1 - alpha)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def mnist_style(gray: np.ndarray, source: str = "image") -> np.ndarray:
    """float [H, W] in [0, 1], either polarity -> float32 [28, 28], white digit on black."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 0.5:  # dark ink on light paper: make it MNIST's white on black
        gray, background = 1 - gray, 1 - background
    ink = float(gray.max())
    if ink - background < 0.1:
        raise RegcliError(f"{source}: no digit found (the image is nearly uniform)")
    stretched = np.clip((gray - background) / (ink - background), 0, 1)
    rows = np.flatnonzero((stretched > INK_THRESHOLD).any(1))
    cols = np.flatnonzero((stretched > INK_THRESHOLD).any(0))
    digit = stretched[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(
        Image.fromarray(digit.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    ).clip(0, 1)
    return centre_by_mass(fitted)


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place digit in a 28x28 black image with its centre of mass at pixel (14, 14), as MNIST."""
    height, width = digit.shape
    total = digit.sum()
    ys, xs = np.indices(digit.shape)
    com_y, com_x = (ys * digit).sum() / total, (xs * digit).sum() / total
    top = int(round(SIDE / 2 - com_y))
    left = int(round(SIDE / 2 - com_x))
    top, left = min(max(top, 0), SIDE - height), min(max(left, 0), SIDE - width)
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    canvas[top : top + height, left : left + width] = digit
    return canvas
