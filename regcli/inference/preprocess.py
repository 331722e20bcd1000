"""Turn real-world digit images into MNIST-style 28x28 inputs, the way MNIST itself was made.

MNIST digits are white ink on black, scaled to fit a 20x20 box with their aspect ratio kept,
then placed in a 28x28 image so that their centre of mass is at the centre. Photos and scans are
usually dark ink on a light background, of any size and colour: we convert them to grayscale,
invert them when the ink is darker than the paper, stretch paper-to-ink to 0..1 above the paper's
noise, crop to the ink and then do what MNIST did. A photo lit unevenly (a gradient, a shadow) has
its paper's local level subtracted first, and only such a photo (Lighting says which): an evenly
lit image is read exactly as if flattening did not exist.

Pixels only: reading files (and refusing the ones that must not be read) is regcli.inputs' job.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from regcli.core.config import SIDE
from regcli.core.errors import RegcliError

BOX = 20  # px: the digit is fitted into BOX x BOX, as in MNIST
INK_THRESHOLD = 0.1  # on the stretched 0..1 scale: what counts as ink when cropping
MIN_CONTRAST = 0.1  # on the 0..1 gray scale: less ink-to-paper difference is "no digit"
NOISE_SIGMAS = 3.0  # paper brighter than median + this many noise sigmas is still paper
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation, for Gaussian noise
MIN_NEIGHBOURS = 3  # ink pixels (itself included) a pixel's 3x3 window needs to count for the crop
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit PNGs open in these
FLATTEN_FROM = 64  # px: only images at least this large may be flattened (MNIST is 28)
PAPER_GRID = 12  # blocks per side over which the paper's local level is measured
PAPER_PERCENTILE = 25  # a block's paper level: most of a block is paper, strokes are thin
# When lighting is uneven (see Lighting), measured by `.venv/bin/python benchmarks/heldout.py`
# (min..max per set in benchmarks/heldout-results.json; photos: 200 MNIST test digits each).
# disagreement: evenly lit images at most 0.072 (MNIST shrunk to 8 px, scanned at 64 px), 0.065
# (samples/photos), 0.027 (even photos); unevenly lit photos at least 0.187 (a 30% shadow in a
# corner), 0.202 (a 40% shadow over the digit), 0.354 (a 30% gradient). Tight optdigits scans
# reach 0.214, and EDGE_CLEAR keeps them as they are.
DISAGREEMENT = 0.12  # share of the ink pixels (of either reading) on which the readings differ
# flattened_edge: photos, evenly lit or not, at most 0.023 (a digit grazing the edge); optdigits
# scans, whose digits touch the edge, at least 0.094 (32 px nearest), 0.117 (64 px bilinear).
EDGE_CLEAR = 0.05  # share of the image's edge pixels the flattened reading may take for ink
# Several digits in one image: measured on the first 3,000 MNIST test digits (0.1% counted as
# several marks), 1,000 optdigits scans and samples/photos (none), and 100 pairs of MNIST digits
# side by side (all): ink at BLOB_LEVEL, grown by a pixel (a stroke's gap closes), in marks
BLOB_LEVEL = 0.3  # on a fitted digit's 0..1 scale: what counts as ink for separate marks
BLOB_SHARE = 0.25  # a second mark this large (share of the largest) is a mark, not a stray dot


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
    Uneven lighting is flattened first, only where `Lighting` finds it uneven.
    """
    reading, _ = read_digit(gray, source)
    return fit_digit(reading, source)


@dataclass(frozen=True)
class Reading:
    """Where the ink is: the image stretched paper -> 0, ink -> 1, and the ink mask."""

    stretched: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Lighting:
    """Whether an image's lighting is uneven enough to be flattened before it is read.

    The image is read twice, plainly and with its paper's local level subtracted (paper_level).
    Under even light the two readings take the same pixels for ink; a gradient or a shadow makes
    the plain one take shadowed paper for ink (or lose faint strokes under a wide paper band),
    so they disagree. They also disagree on a tight scan whose thick digit touches the image's
    edge (flattening eats ink there: the UCI optdigits scans lost 10 points of accuracy that
    way), but there the flattened reading still finds ink on the edge, while a photo of a digit
    on a page, once flattened, has paper all around it. So: flattened only if the readings
    disagree and the flattened one leaves the edge clear.
    """

    disagreement: float  # 1 - IoU of the two readings' ink masks (1 if either finds no digit)
    flattened_edge: float  # share of the edge the flattened reading takes for ink (1: none)

    @classmethod
    def of(cls, plain: Reading | RegcliError, flat: Reading | RegcliError) -> "Lighting":
        if isinstance(plain, RegcliError) or isinstance(flat, RegcliError):
            disagreement = 1.0
        else:
            either = np.count_nonzero(plain.mask | flat.mask)
            disagreement = np.count_nonzero(plain.mask ^ flat.mask) / either
        return cls(float(disagreement), edge_share(flat))

    @property
    def uneven(self) -> bool:
        return self.disagreement >= DISAGREEMENT and self.flattened_edge <= EDGE_CLEAR


def read_digit(gray: np.ndarray, source: str = "image") -> tuple[Reading, Lighting | None]:
    """The reading mnist_style fits, and the lighting that decided whether it is flattened
    (None for an image too small to flatten); RegcliError when no digit is found."""
    gray, border, background = ink_bright(gray, source)
    plain = read_ink(gray, border, background, source)
    lighting = None
    if max(gray.shape) >= FLATTEN_FROM:
        flat = read_ink(*paper_removed(gray), source)
        lighting = Lighting.of(plain, flat)
        if lighting.uneven:
            return flat, lighting
    if isinstance(plain, RegcliError):
        raise plain
    return plain, lighting


def measure_lighting(gray: np.ndarray) -> Lighting:
    """The lighting statistics of any image, whatever its size (for benchmarks and tests)."""
    gray, border, background = ink_bright(gray)
    return Lighting.of(read_ink(gray, border, background), read_ink(*paper_removed(gray)))


def ink_bright(gray: np.ndarray, source: str = "image") -> tuple[np.ndarray, np.ndarray, float]:
    """(image with the ink brighter than the paper, its border pixels, their median)."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0 or not np.isfinite(gray).all():
        raise RegcliError(f"{source}: not a 2-D image of finite pixel values")
    border = edge_pixels(gray)
    background = float(np.median(border))
    if background - gray.min() > gray.max() - background:  # dark ink on lighter paper
        gray, border, background = 1 - gray, 1 - border, 1 - background
    return gray, border, background


def paper_removed(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ink_bright's triple for the image less its paper's local level (lighting flattened)."""
    flat = gray - paper_level(gray)
    border = edge_pixels(flat)
    return flat, border, float(np.median(border))


def read_ink(
    gray: np.ndarray, border: np.ndarray, background: float, source: str = "image"
) -> Reading | RegcliError:
    """Paper and ink levels, the stretch and the ink mask; the error (returned, not raised)
    says why no digit is found."""
    noise = MAD_TO_SIGMA * float(np.median(np.abs(border - background)))
    paper = background + NOISE_SIGMAS * noise
    ink = float(gray.max())
    if ink - paper < MIN_CONTRAST:
        return RegcliError(f"{source}: no digit found (the image is nearly uniform)")
    for _ in range(2):  # the second pass takes the ink level from the strokes, not from specks
        stretched = np.clip((gray - paper) / (ink - paper), 0, 1)
        mask = stretched > INK_THRESHOLD
        mask &= window_sum(mask) >= MIN_NEIGHBOURS
        if not mask.any():
            return RegcliError(f"{source}: no digit found (only isolated specks)")
        ink = float(gray[mask].max())
    return Reading(stretched, mask)


def edge_share(reading: Reading | RegcliError) -> float:
    """The share of the image's edge pixels read as ink (1 when no digit is found)."""
    if isinstance(reading, RegcliError):
        return 1.0
    return float(edge_pixels(reading.mask).mean())


def edge_pixels(image: np.ndarray) -> np.ndarray:
    """The first and last row and column, in one array (corners twice, as the median had it)."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def fit_digit(reading: Reading, source: str) -> np.ndarray:
    """Crop to the ink, fit it into BOX x BOX and centre it by mass in 28 x 28, as MNIST."""
    mask, stretched = reading.mask, reading.stretched
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


def ink_marks(digit: np.ndarray) -> int:
    """Separate marks of ink (8-connected) in a fitted digit, counting only those at least
    BLOB_SHARE of the largest: more than one means the image holds several digits (or a digit
    and something else), while regcli reads one digit per image. The ink is grown by one
    pixel first, so that a stroke broken by a pixel's gap stays one mark."""
    padded = np.pad(digit >= BLOB_LEVEL, 1)
    rows, cols = digit.shape
    ink = np.zeros((rows, cols), dtype=bool)
    for dy in range(3):
        for dx in range(3):
            ink |= padded[dy : dy + rows, dx : dx + cols]
    seen = np.zeros_like(ink)
    sizes = []
    for start in zip(*np.nonzero(ink), strict=True):
        if seen[start]:
            continue
        seen[start], stack, size = True, [start], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny in range(max(y - 1, 0), min(y + 2, ink.shape[0])):
                for nx in range(max(x - 1, 0), min(x + 2, ink.shape[1])):
                    if ink[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        sizes.append(size)
    return sum(1 for size in sizes if size >= BLOB_SHARE * max(sizes, default=0))
