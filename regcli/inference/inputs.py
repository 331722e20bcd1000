"""Reading `regcli predict`'s untrusted inputs: finding them, opening them, decoding them.

Inputs are image files, folders and .npy arrays, and any of them may be broken, hostile or huge;
each problem becomes a RegcliError (or a Failure while walking) that regcli.predict turns into
one error row, so one bad input never stops the others. Folders are walked one directory at a
time and arrays are read a chunk at a time (never memory-mapped: a file cut short while mapped
kills the process with SIGBUS), so memory is bounded by a chunk, not by the inputs.

What is decoded is limited on purpose: only PNG, JPEG and BMP, whatever a file's name says (so
Pillow never hands a file to a plugin that runs external programs, like EPS with Ghostscript),
only regular files (a FIFO would block forever), only images within a pixel budget read from the
header (a 100-byte PNG can declare 13,000 x 13,000 pixels), and arrays without pickles, whose
header is checked (a shape may be negative or absurd) before anything is read.

numpy and Pillow only: this runs with the ONNX backend without loading PyTorch.
"""

import math
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from regcli.core import files
from regcli.core.config import SIDE, UNIT
from regcli.core.errors import RegcliError, RegcliWarning, first_line
from regcli.core.text import shown, terminal_safe
from regcli.inference.preprocess import SIXTEEN_BIT_MODES, ink_marks, mnist_style, to_gray

# Images with more pixels (width x height) than this are refused from their header, before any
# pixel is decoded. 40 MP holds every ordinary photo or scan (a 12 MP phone photo, an A4 page
# at 600 dpi is 35 MP) and caps one decoded image at 160 MB (RGBA, 4 bytes a pixel).
MAX_PIXELS = 40_000_000
WORKING_SIDE = 1024  # px: larger images are reduced (JPEG while decoding) before preprocessing
ARRAY_CHUNK = 1024  # images read from a .npy at a time (3.2 MB as float32, 6.4 MB as float64)
DECODED_FORMATS = ["PNG", "JPEG", "BMP"]  # the only Pillow plugins ever used
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")  # what a folder search picks as images
ARRAY_SUFFIX = ".npy"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive
IMAGE_VALUES = SIDE * SIDE  # values per 28 x 28 image in a .npy


@dataclass(frozen=True)
class Failure:
    """A problem met while walking folders (a loop, a folder that cannot be listed): a row."""

    path: str
    message: str


# --- finding inputs -------------------------------------------------------------------------


def pending_inputs(paths: Iterable[Path]) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """(path, 28x28 image, None) per image found, (path, None, message) per failure."""
    for item in discover(paths):
        if isinstance(item, Failure):
            yield item.path, None, item.message
            continue
        try:
            for label, image in read_input(item):
                yield label, image, None
        except RegcliError as error:
            yield shown(item), None, first_line(error)


def discover(paths: Iterable[Path]) -> Iterator[Path | Failure]:
    """Files named explicitly (always tried), and the matching files under folders named."""
    for path in paths:
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            is_dir = False  # reading it says why it is missing or unreadable
        if is_dir:
            yield from walk(path)
        else:
            yield path


def walk(root: Path) -> Iterator[Path | Failure]:
    """Every .png, .jpg, .jpeg, .bmp and .npy file under root, depth first, sorted by name.

    One directory is listed at a time (never the whole tree), with an explicit stack so depth
    is no recursion limit. Symlinked folders are followed, except back into a folder on the
    current path: that is a loop, reported once as a failure.
    """
    listing = list_folder(root)
    if isinstance(listing, Failure):
        yield listing
        return
    stack = [(iter(listing), {folder_key(root): root})]
    while stack:
        entries, ancestors = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        if not is_folder(entry):
            if path.suffix.lower() in (*IMAGE_SUFFIXES, ARRAY_SUFFIX):
                yield path
            continue
        key = folder_key(path)
        if key in ancestors:
            loop = f"folder loop (it leads back to {terminal_safe(shown(ancestors[key]))})"
            yield Failure(shown(path), f"{terminal_safe(shown(path))}: {loop}")
            continue
        listing = list_folder(path)
        if isinstance(listing, Failure):
            yield listing
            continue
        stack.append((iter(listing), {**ancestors, key: path}))


def list_folder(folder: Path) -> list[os.DirEntry] | Failure:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        reason = f"cannot list the folder ({error.strerror or first_line(error)})"
        return Failure(shown(folder), f"{terminal_safe(shown(folder))}: {reason}")


def is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False  # a symlink loop: tried as a file, which reports it


def folder_key(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


# --- reading one input ----------------------------------------------------------------------


def read_input(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(row path, float32 [28, 28] in [0, 1]) per image in the file; RegcliError if unusable.

    The content decides what a file is: a NumPy header makes it an array, anything else must
    decode as PNG, JPEG or BMP. An image file is closed before its image is yielded; an array
    stays open while its chunks are read.
    """
    label = shown(path)
    with open_regular(path, label) as f:
        head = f.read(len(NPY_MAGIC))
        f.seek(0)
        if head == NPY_MAGIC:
            array = open_array(f, label)
            for start in range(0, array.count, ARRAY_CHUNK):
                for i, image in enumerate(array.scaled(start), start):
                    yield f"{label}[{i}]", image
            return
        if path.suffix.lower() in (ARRAY_SUFFIX, ".npz"):
            what = "an .npz archive" if head.startswith(ZIP_MAGIC) else "no NumPy header"
            raise RegcliError(f"{terminal_safe(label)}: {what}, not a .npy array")
        gray = read_image(f, label)
    digit = mnist_style(gray, terminal_safe(label))
    marks = ink_marks(digit)
    if marks > 1:
        warnings.warn(
            f"{label}: {marks} separate marks of ink; regcli reads one digit per image, so its "
            "label is for all of them together",
            RegcliWarning,
            stacklevel=2,
        )
    yield label, digit


def open_regular(path: Path, label: str):
    """Open a regular file for reading; anything else (a FIFO, a device, a folder, a dangling
    link) is refused without being read (files.open_regular, named terminal-safe)."""
    return files.open_regular(path, None, terminal_safe(label))


def read_image(f, label: str) -> np.ndarray:
    """A PNG, JPEG or BMP file -> float32 [H, W] in [0, 1], upright as its EXIF says."""
    safe = terminal_safe(label)
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: our own limit is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(f, formats=DECODED_FORMATS)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise RegcliError(
                f"{safe}: image of {width} x {height} pixels is over the "
                f"{MAX_PIXELS / 1e6:g}-megapixel limit; not decoded"
            )
        if max(width, height) > WORKING_SIDE:  # JPEG decodes at 1/2, 1/4 or 1/8 scale
            scale = WORKING_SIDE / max(width, height)
            image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # phones store photos sideways
        image = shrink(image)
    except RegcliError:
        raise
    except UnidentifiedImageError:
        raise RegcliError(f"{safe}: not a PNG, JPEG or BMP image") from None
    except Image.DecompressionBombError as error:  # so large that Pillow refuses to open it
        raise RegcliError(
            f"{safe}: over the {MAX_PIXELS / 1e6:g}-megapixel limit; not decoded "
            f"({first_line(error)})"
        ) from None
    except Exception as error:  # a decoder has many ways to fail on a broken file
        reason = f"{type(error).__name__}: {first_line(error)}"
        raise RegcliError(f"{safe}: cannot decode the image ({reason})") from None
    return to_gray(image)


def shrink(image: Image.Image) -> Image.Image:
    """Box-average a large image down by an integer factor so that preprocessing stays small."""
    factor = max(image.size) // WORKING_SIDE
    if factor < 2:
        return image
    if image.mode in ("P", "PA"):  # palette indices cannot be averaged
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in SIXTEEN_BIT_MODES:
        image = image.convert("I")
    return image.reduce(factor)


# --- reading a .npy -------------------------------------------------------------------------


@dataclass
class ArrayFile:
    """The images of an open .npy, read with f.read a block at a time (never memory-mapped).

    A C-order array's images lie one after another; a Fortran-order one stores each pixel's
    values for all images together, so a block is gathered with one read per pixel. Every read
    must return all it asks for: a file cut short while being read is a RegcliError.
    """

    f: object
    label: str
    dtype: np.dtype
    count: int  # images
    offset: int  # bytes: where the values start
    fortran: bool
    low: float = math.inf  # the values' range, once checked
    high: float = -math.inf

    @property
    def end(self) -> int:
        """bytes: where the values end, as the header says."""
        return self.offset + self.count * IMAGE_VALUES * self.dtype.itemsize

    def images(self, start: int, limit: int) -> np.ndarray:
        """Images start .. start + limit (or the last) as [n, 28, 28] of the file's dtype."""
        n = min(limit, self.count - start)
        size = self.dtype.itemsize
        if not self.fortran:
            data = self.read(self.offset + start * IMAGE_VALUES * size, n * IMAGE_VALUES * size)
            return np.frombuffer(data, self.dtype).reshape(n, SIDE, SIDE)
        pixels = np.empty((IMAGE_VALUES, n), self.dtype)  # [column * 28 + row, image]
        for p in range(IMAGE_VALUES):
            at = self.offset + (p * self.count + start) * size
            pixels[p] = np.frombuffer(self.read(at, n * size), self.dtype)
        return pixels.reshape(SIDE, SIDE, n).transpose(2, 1, 0)

    def scaled(self, start: int) -> np.ndarray:
        """A block of images as float32 in 0..1, refused if it no longer holds checked values."""
        block = self.images(start, ARRAY_CHUNK)
        finite = self.dtype.kind != "f" or np.isfinite(block).all()
        if not finite or block.min() < self.low or block.max() > self.high:
            raise RegcliError(f"{terminal_safe(self.label)}: changed while being read")
        scale = UNIT if self.dtype == np.uint8 or self.high > 1 else 1.0
        block = block.astype(np.float32)  # one copy, scaled in place
        block *= np.float32(scale)
        return np.clip(block, 0, 1, out=block)

    def read(self, at: int, size: int) -> bytes:
        safe = terminal_safe(self.label)
        try:
            self.f.seek(at)
            data = self.f.read(size)
        except OSError as error:
            raise RegcliError(f"{safe}: cannot read ({error.strerror or error})") from None
        if len(data) != size:
            raise RegcliError(
                f"{safe}: cut short while being read (it ends at byte {at + len(data):,}, "
                f"its header needs {self.end:,})"
            )
        return data


def open_array(f, label: str) -> ArrayFile:
    """A .npy of digits -> its images ready to be read, every value checked first.

    The header is parsed without loading anything (never a pickle), the dtype and shape are
    checked from it, and the values are read chunk by chunk and checked, so that an unusable
    array is refused with its reason before any of it is predicted. Memory stays bounded by one
    chunk however large the array.
    """
    safe = terminal_safe(label)
    shape, fortran, dtype = array_header(f, safe)
    images = (1, *shape) if len(shape) == 2 else shape
    array = ArrayFile(f, label, dtype, images[0], f.tell(), fortran)
    size = os.fstat(f.fileno()).st_size
    if size < array.end:
        raise RegcliError(f"{safe}: truncated .npy ({size} bytes, its header needs {array.end})")
    low, high = math.inf, -math.inf
    for start in range(0, array.count, ARRAY_CHUNK):
        block = array.images(start, ARRAY_CHUNK)
        if dtype.kind == "f" and not np.isfinite(block).all():
            raise RegcliError(f"{safe}: contains NaN or infinite values")
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    if low < 0 or high > 255:
        raise RegcliError(
            f"{safe}: values from {low:g} to {high:g}, expected uint8 0..255 or float 0..1"
        )
    array.low, array.high = low, high
    return array


def array_header(f, safe: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from a .npy header, checked to be images of digits."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise RegcliError(f"{safe}: .npy format version {version} is not supported")
    except (ValueError, SyntaxError, TypeError, OverflowError) as error:
        raise RegcliError(f"{safe}: broken .npy header ({first_line(error)})") from None
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise RegcliError(f"{safe}: invalid shape {shape!r} in the .npy header")
    if dtype.kind not in "uif":
        raise RegcliError(
            f"{safe}: dtype {dtype} is not pixel values (expected uint8 0..255 or float 0..1)"
        )
    images = (1, *shape) if len(shape) == 2 else shape
    if len(images) != 3 or images[1:] != (SIDE, SIDE):
        raise RegcliError(f"{safe}: array of shape {shape}, expected (N, 28, 28) or (28, 28)")
    if images[0] == 0:
        raise RegcliError(f"{safe}: array of shape {shape} holds no images")
    return shape, bool(fortran_order), dtype
