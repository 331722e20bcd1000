"""Write the sample inputs of `regcli predict` into samples/ (run from the repository root).

    .venv/bin/python samples/make_samples.py [--out samples] [--data-dir data]

MNIST test digits rendered like photos of handwriting, so that `regcli predict` can be tried on
inputs with a known answer: dark ink on light paper, lit unevenly, slightly blurred and noisy,
saved as JPEG, PNG and BMP in several sizes, one colour-tinted and one stored sideways with an
EXIF orientation tag (as phones do). Each file is named after its true label and test index
(seven_0.jpg is test image 0, a 7). Plus digits.npy: test images 0-7 as uint8 (8, 28, 28).

Deterministic: fixed digits, sizes and placements; the noise comes from a generator seeded with
the test index.
"""

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from regcli.data.mnist import load_split

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ORIENTATION = 0x0112  # the EXIF tag; 6 means "rotate 90 degrees clockwise to display"
NPY_INDICES = range(8)  # test images in digits.npy
INK = (40, 40, 45)  # RGB: a soft pencil or black pen, not pure black
PAPER = (236, 234, 226)  # RGB: off-white paper
BLUE_INK, CREAM_PAPER = (30, 50, 140), (245, 232, 200)
NOISE = 0.02  # standard deviation of the sensor noise, as a fraction of full scale
SHADING = 0.08  # the paper darkens by this fraction from one corner to the opposite one
DIGIT_SHARE = 0.8  # side of the 28x28 MNIST frame as a share of the photo's shorter side
JPEG_QUALITY = 85
FORMATS = {".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP"}

# (test index, file suffix, (width, height) in px, where the digit sits: (x, y) shares of the
#  free space, ink and paper colours, EXIF orientation or None)
PHOTOS = [
    (0, "jpg", (320, 240), (0.5, 0.5), INK, PAPER, None),
    (1, "png", (96, 96), (0.4, 0.6), INK, PAPER, None),
    (2, "jpg", (200, 300), (0.5, 0.3), INK, PAPER, None),
    (3, "jpg", (400, 400), (0.6, 0.5), INK, PAPER, None),
    (4, "png", (128, 160), (0.5, 0.5), INK, PAPER, None),
    (7, "jpg", (300, 220), (0.3, 0.5), BLUE_INK, CREAM_PAPER, None),
    (8, "jpg", (240, 320), (0.5, 0.6), INK, PAPER, 6),
    (11, "bmp", (64, 64), (0.5, 0.5), INK, PAPER, None),
    (18, "png", (80, 120), (0.5, 0.4), INK, PAPER, None),
    (61, "jpg", (360, 270), (0.7, 0.5), INK, PAPER, None),
]


def photo(digit: np.ndarray, size, place, ink, paper, seed: int) -> Image.Image:
    """A 28x28 MNIST digit (white on black) as an RGB photo of dark ink on light paper."""
    width, height = size
    side = round(min(width, height) * DIGIT_SHARE)
    glyph = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    glyph = glyph.filter(ImageFilter.GaussianBlur(side / 150))  # a slightly soft focus
    coverage = np.zeros((height, width), dtype=np.float32)
    left, top = round((width - side) * place[0]), round((height - side) * place[1])
    coverage[top : top + side, left : left + side] = np.asarray(glyph, dtype=np.float32) / 255
    ys, xs = np.mgrid[0:height, 0:width]
    light = 1 - SHADING * (xs / width + ys / height) / 2  # lit from the top left
    paper_rgb = np.asarray(paper, dtype=np.float32) / 255 * light[..., None]
    ink_rgb = np.asarray(ink, dtype=np.float32) / 255
    pixels = paper_rgb * (1 - coverage[..., None]) + ink_rgb * coverage[..., None]
    pixels += np.random.default_rng(seed).normal(0, NOISE, (height, width, 1))
    return Image.fromarray((pixels.clip(0, 1) * 255).round().astype(np.uint8))


def save(image: Image.Image, path: Path, orientation: int | None) -> None:
    """Save by suffix; with an orientation, store the pixels so that a viewer shows them upright."""
    if path.suffix == ".jpg":
        options = {"quality": JPEG_QUALITY}
    else:  # lossless files are kept small as grayscale scans
        image, options = image.convert("L"), {"optimize": True} if path.suffix == ".png" else {}
    if orientation == 6:
        image = image.transpose(Image.Transpose.ROTATE_90)  # a viewer turns it 90 degrees back
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format=FORMATS[path.suffix], **options)
    path.write_bytes(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("samples"))
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    test = load_split(args.data_dir, "test")
    (args.out / "photos").mkdir(parents=True, exist_ok=True)
    for index, suffix, size, place, ink, paper, orientation in PHOTOS:
        label = int(test.labels[index])
        path = args.out / "photos" / f"{NAMES[label]}_{index}.{suffix}"
        save(photo(test.images[index], size, place, ink, paper, seed=index), path, orientation)
        print(f"wrote {path}")
    np.save(args.out / "digits.npy", test.images[list(NPY_INDICES)])
    print(f"wrote {args.out / 'digits.npy'} (test images {NPY_INDICES[0]}-{NPY_INDICES[-1]})")


if __name__ == "__main__":
    main()
