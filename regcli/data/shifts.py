"""Shifted test sets: the MNIST test digits rotated, noised, blurred or partly erased, the same
images for every model, so that robustness can be compared model against model.

Every shift is deterministic (no random generator whose stream a library update could change:
where a shift needs chance, it hashes the image's index and pixel with the shift's own name) and
works on uint8 images [N, 28, 28] in numpy, so `evaluate --backend onnx --shift ...` never loads
PyTorch. How each shift is made, exactly:

- `rotate:D`  every digit turned D degrees counter-clockwise about the image centre (13.5, 13.5),
  bilinear interpolation, background (0) where the turned image has no source pixel.
- `noise:S`   Gaussian noise of standard deviation S (pixels on a 0..1 scale) added to every
  pixel, clipped to [0, 1], rounded back to 0..255.
- `blur:S`    a Gaussian blur of standard deviation S pixels (a separable kernel of radius
  ceil(3 S), normalised, zero beyond the image's edge).
- `erase:K`   one K x K square of each image set to background, its corner drawn uniformly over
  the positions where it fits.
"""

import math
from dataclasses import dataclass

import numpy as np

from regcli.core.config import SIDE, ShiftKind
from regcli.core.errors import UsageError
from regcli.data.mnist import hashed_stream

CENTRE = (SIDE - 1) / 2  # the image centre, in pixel coordinates
SHIFT_KEY = b"regcli shift"  # salts the hashes that place noise and erased squares


# the accepted amounts per kind (inclusive), with their unit for the error message
LIMITS = {
    ShiftKind.rotate: (0.0, 180.0, "degrees"),
    ShiftKind.noise: (0.0, 1.0, "standard deviation on a 0..1 pixel scale"),
    ShiftKind.blur: (0.0, 5.0, "pixels of standard deviation"),
    ShiftKind.erase: (1.0, float(SIDE), "pixels a side, a whole number"),
}


@dataclass(frozen=True)
class Shift:
    kind: ShiftKind
    amount: float = 0.0

    @property
    def name(self) -> str:
        """How output and --json name it: `rotate:30`, `noise:0.3`, `none`."""
        return self.kind.value if self.kind is ShiftKind.none else f"{self.kind}:{self.amount:g}"

    def apply(self, images: np.ndarray) -> np.ndarray:
        """The shifted copy of uint8 images [N, 28, 28] (the same input, the same output)."""
        if self.kind is ShiftKind.none:
            return images
        made = {
            ShiftKind.rotate: rotate,
            ShiftKind.noise: noise,
            ShiftKind.blur: blur,
            ShiftKind.erase: erase,
        }[self.kind](np.asarray(images, dtype=np.uint8), self.amount, self.name)
        return made


def parse_shift(text: str) -> Shift:
    """`rotate:30`, `noise:0.3`, `blur:1`, `erase:8` or `none`, checked."""
    kind_text, _, amount_text = text.strip().partition(":")
    choices = ", ".join(f"{k}:<amount>" for k in LIMITS) + ", none"
    try:
        kind = ShiftKind(kind_text)
    except ValueError:
        raise UsageError(f"--shift {text!r}: give one of {choices}") from None
    if kind is ShiftKind.none:
        if amount_text:
            raise UsageError(f"--shift {text!r}: none takes no amount")
        return Shift(kind)
    low, high, unit = LIMITS[kind]
    try:
        amount = float(amount_text)
    except ValueError:
        raise UsageError(f"--shift {text!r}: {kind} needs an amount ({unit})") from None
    whole = kind is not ShiftKind.erase or amount.is_integer()
    if not (math.isfinite(amount) and low <= amount <= high and whole):
        raise UsageError(f"--shift {text!r}: {kind}'s amount must be in {low:g}..{high:g} ({unit})")
    return Shift(kind, amount)


def parse_shifts(texts: list[str] | None) -> list[Shift]:
    """Every --shift given (each may hold several, comma-separated), once each, in order."""
    found: dict[str, Shift] = {}
    for text in texts or []:
        for part in (p for p in text.split(",") if p.strip()):
            shift = parse_shift(part)
            found.setdefault(shift.name, shift)
    return list(found.values()) or [Shift(ShiftKind.none)]


def uniforms(count: int, name: str, stream: int) -> np.ndarray:
    """`count` numbers in (0, 1), a pure function of the shift's name and the stream number
    (splitmix64 of a hashed key plus the index: version-proof, unlike a library generator)."""
    z = hashed_stream(count, SHIFT_KEY + f"{name}/{stream}".encode())
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def rotate(images: np.ndarray, degrees: float, name: str) -> np.ndarray:
    """Turned `degrees` counter-clockwise; each output pixel samples its source bilinearly."""
    theta = math.radians(degrees)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    dy, dx = y - CENTRE, x - CENTRE
    # the source of an output pixel: the inverse rotation (image rows grow downwards)
    sx = math.cos(theta) * dx - math.sin(theta) * dy + CENTRE
    sy = math.sin(theta) * dx + math.cos(theta) * dy + CENTRE
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    padded = np.pad(images.astype(np.float64), ((0, 0), (1, 1), (1, 1)))  # zero outside
    out = np.zeros(images.shape, dtype=np.float64)
    for oy, ox, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):  # fmt: skip
        rows = np.clip(y0 + oy + 1, 0, SIDE + 1)
        cols = np.clip(x0 + ox + 1, 0, SIDE + 1)
        out += padded[:, rows, cols] * weight
    return to_uint8(out)


def noise(images: np.ndarray, sigma: float, name: str) -> np.ndarray:
    """Gaussian noise by Box-Muller from two hashed uniform streams."""
    count = images.size
    u1, u2 = uniforms(count, name, 1), uniforms(count, name, 2)
    gaussian = np.sqrt(-2 * np.log(u1)) * np.cos(2 * math.pi * u2)
    noisy = images.astype(np.float64) / 255 + sigma * gaussian.reshape(images.shape)
    return to_uint8(np.clip(noisy, 0, 1) * 255)


def blur(images: np.ndarray, sigma: float, name: str) -> np.ndarray:
    if sigma == 0:
        return images.copy()
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = images.astype(np.float64)
    for axis in (1, 2):
        padded = np.pad(out, [(0, 0)] + [(radius, radius) if a == axis else (0, 0) for a in (1, 2)])
        out = sum(
            weight * np.take(padded, np.arange(SIDE) + radius + offset, axis=axis)
            for offset, weight in zip(offsets, kernel, strict=True)
        )
    return to_uint8(out)


def erase(images: np.ndarray, side: float, name: str) -> np.ndarray:
    side = int(side)
    positions = SIDE - side + 1  # corners where the square fits, per axis
    corners = np.floor(uniforms(2 * len(images), name, 1) * positions).astype(int)
    rows, cols = corners[0::2], corners[1::2]
    out = images.copy()
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        out[i, r : r + side, c : c + side] = 0
    return out
