"""Turn real-world digit images into MNIST-style 28x28 inputs, the way MNIST itself was made.

MNIST digits are white ink on black, scaled to fit a 20x20 box with their aspect ratio kept,
then placed in a 28x28 image so that their centre of mass is at the centre. Photos and scans are
usually dark ink on a light background, of any size and colour: we convert them to grayscale,
invert them when the ink is darker than the paper, stretch paper-to-ink to 0..1 above the paper's
noise, crop to the ink and then do what MNIST did.

Pixels only: reading files (and refusing the ones that must not be read) is regcli.predict's job.
"""

import numpy as np
from PIL import Image

from regcli.config import SIDE
from regcli.errors import RegcliError

BOX = 20  # px: the digit is fitted into BOX x BOX, as in MNIST
INK_THRESHOLD = 0.1  # on the stretched 0..1 scale: what counts as ink when cropping
MIN_CONTRAST = 0.1  # on the 0..1 gray scale: less ink-to-paper difference is "no digit"
NOISE_SIGMAS = 3.0  # paper brighter than median + this many noise sigmas is still paper
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation, for Gaussian noise
MIN_NEIGHBOURS = 3  # ink pixels (itself included) a pixel's 3x3 window needs to count for the crop
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit PNGs open in these
FLATTEN_FROM = 64  # px: photos at least this large get uneven lighting flattened (MNIST is 28)
PAPER_GRID = 12  # blocks per side over which the paper's local level is measured
PAPER_PERCENTILE = 25  # a block's paper level: most of a block is paper, strokes are thin


def to_gray(image: Image.Image) -> np.ndarray:
    """Any PIL image -> float32 [H, W] in [0, 1]; transparency becomes background."""
    if image.mode in SIXTEEN_BIT_MODES:  # convert("L") would clip 0..65535 to white
        return np.clip(np.asarray(image, dtype=np.float32) / 65535, 0, 1)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255
        luminance = np.asarray(rgba.convert("L"), dtype=np.float32) / 255
        # put the visible strokes on a background that contrasts with them
        ink_is_dark = (luminance * alpha).sum() / max(alpha.sum(), 1e-6) < 0.5
        background = 1.0 if ink_is_dark else 0.0
        return luminance * alpha + background * (1 - alpha)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def mnist_style(gray: np.ndarray, source: str = "image") -> np.ndarray:
    """float [H, W] in [0, 1], either polarity -> float32 [28, 28], white digit on black.

    The paper's level and noise come from the image border (median and MAD, so a digit touching
    the edge does not move them); the ink is whatever departs most from the paper. A noisy photo
    of paper therefore neither counts as ink nor widens the crop: pixels within NOISE_SIGMAS of
    the paper are background, and isolated specks set neither the crop nor the ink level.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0 or not np.isfinite(gray).all():
        raise RegcliError(f"{source}: not a 2-D image of finite pixel values")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background - gray.min() > gray.max() - background:  # dark ink on lighter paper
        gray = 1 - gray
    if max(gray.shape) >= FLATTEN_FROM:  # a shadow or a lighting gradient is not ink
        gray = gray - paper_level(gray)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    noise = MAD_TO_SIGMA * float(np.median(np.abs(border - background)))
    paper = background + NOISE_SIGMAS * noise
    ink = float(gray.max())
    if ink - paper < MIN_CONTRAST:
        raise RegcliError(f"{source}: no digit found (the image is nearly uniform)")
    for _ in range(2):  # the second pass takes the ink level from the strokes, not from specks
        stretched = np.clip((gray - paper) / (ink - paper), 0, 1)
        mask = stretched > INK_THRESHOLD
        mask &= window_sum(mask) >= MIN_NEIGHBOURS
        if not mask.any():
            raise RegcliError(f"{source}: no digit found (only isolated specks)")
        ink = float(gray[mask].max())
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    digit = stretched[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(
        Image.fromarray(digit.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    ).clip(0, 1)
    if fitted.sum() <= 0:
        raise RegcliError(f"{source}: no digit found (the ink vanishes at 20x20)")
    return centre_by_mass(fitted)


def paper_level(gray: np.ndarray) -> np.ndarray:
    """The paper's local level under bright ink on darker paper, as a smooth field: a low
    percentile per block of a coarse grid (strokes are thin, so most of a block is paper), the
    lowest of each block's neighbours (a block the digit fills is not paper), then bilinear."""
    height, width = gray.shape
    bh, bw = -(-height // PAPER_GRID), -(-width // PAPER_GRID)
    padded = np.pad(gray, ((0, bh * PAPER_GRID - height), (0, bw * PAPER_GRID - width)), "edge")
    blocks = padded.reshape(PAPER_GRID, bh, PAPER_GRID, bw).transpose(0, 2, 1, 3)
    level = np.percentile(blocks.reshape(PAPER_GRID, PAPER_GRID, -1), PAPER_PERCENTILE, axis=2)
    around = np.pad(level, 1, "edge")
    level = np.min(
        [around[dy : dy + PAPER_GRID, dx : dx + PAPER_GRID] for dy in range(3) for dx in range(3)],
        axis=0,
    )
    field = Image.fromarray(level.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(field, dtype=np.float32)


def window_sum(mask: np.ndarray) -> np.ndarray:
    """How many True pixels each pixel's 3x3 window holds (outside the image counts as False)."""
    padded = np.pad(mask.astype(np.int16), 1)
    height, width = mask.shape
    return sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))


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
