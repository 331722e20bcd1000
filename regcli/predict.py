"""`regcli predict` as a batch job: many untrusted files in, one result row per input out.

Inputs are image files, folders and .npy arrays, and any of them may be broken, hostile or huge.
One bad input must not stop the others, so every input becomes a row: "ok" with a prediction, or
"error" with a one-line reason. The job streams: folders are walked one directory at a time,
arrays are memory-mapped, and rows leave (to the callbacks and the output file) batch by batch,
so memory is bounded by the batch, not by how many inputs there are.

What is decoded is limited on purpose: only PNG, JPEG and BMP, whatever a file's name says (so
Pillow never hands a file to a plugin that runs external programs, like EPS with Ghostscript),
only regular files (a FIFO would block forever), only images within a pixel budget read from the
header (a 100-byte PNG can declare 13,000 x 13,000 pixels), and arrays without pickles.

numpy and Pillow only: this runs with the ONNX backend without loading PyTorch.
"""

import csv
import json
import math
import os
import stat
import tempfile
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from regcli.artifacts import atomic_open
from regcli.config import NUM_CLASSES, SIDE, UNIT
from regcli.errors import RegcliError, UsageError, first_line
from regcli.preprocess import SIXTEEN_BIT_MODES, mnist_style, to_gray
from regcli.scoring import Predictor, log_softmax

PREDICT_BATCH = 256  # images per inference batch; also the most rows held in memory at once
# Images with more pixels (width x height) than this are refused from their header, before any
# pixel is decoded. 40 MP holds every ordinary photo or scan (a 12 MP phone photo, an A4 page
# at 600 dpi is 35 MP) and caps one decoded image at 160 MB (RGBA, 4 bytes a pixel).
MAX_PIXELS = 40_000_000
WORKING_SIDE = 1024  # px: larger images are reduced (JPEG while decoding) before preprocessing
ARRAY_CHUNK = 1024  # images read from a memory-mapped .npy at a time (3.2 MB as float32)
DECODED_FORMATS = ["PNG", "JPEG", "BMP"]  # the only Pillow plugins ever used
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")  # what a folder search picks as images
ARRAY_SUFFIX = ".npy"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive
OUT_SUFFIXES = (".csv", ".json")
CSV_COLUMNS = ["path", "status", "prediction", "probability", "top3", "error"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet may run such a cell
# Unicode's bidirectional controls: they can make a file name display as another one.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

RowCallback = Callable[[dict], None]
FailureCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class Failure:
    """A problem met while walking folders (a loop, a folder that cannot be listed): a row."""

    path: str
    message: str


def predict_files(
    predict: Predictor,
    paths: Iterable[Path | str],
    out: Path | None = None,
    *,
    on_row: RowCallback | None = None,
    on_failure: FailureCallback | None = None,
    batch_size: int = PREDICT_BATCH,
) -> tuple[int, int]:
    """Predict every input under `paths`; returns (predicted, failed).

    Each result is written to `out` (.csv or .json, written atomically) and then passed on:
    on_row(row) for a prediction, on_failure(path, message) for an input that could not be
    read. Rows come in input order, a batch at a time. The caller exits 1 if any failed.
    UsageError (exit 2) for a bad `out`, and when no input is found at all. On Ctrl-C the rows
    produced so far are kept: `out` is completed and renamed into place, then the
    KeyboardInterrupt propagates.
    """
    check_out(out)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    named: list[str] = []
    counts = {"ok": 0, "error": 0}
    with result_file(out) as write:
        for batch in batched(pending_inputs(remember(paths, named)), batch_size):
            for row in predict_batch(predict, batch):
                write(row)
                counts[row["status"]] += 1
                if row["status"] == "ok" and on_row is not None:
                    on_row(row)
                elif row["status"] == "error" and on_failure is not None:
                    on_failure(row["path"], row["error"])
        if not any(counts.values()):
            raise UsageError(nothing_found(named))
    return counts["ok"], counts["error"]


def check_out(out: Path | None) -> None:
    """Refuse an unusable --out before any work is done."""
    if out is None:
        return
    shown_out = terminal_safe(shown(out))
    if Path(out).suffix.lower() not in OUT_SUFFIXES:
        raise UsageError(f"--out {shown_out}: use a .csv or .json file name")
    if Path(out).is_dir():
        raise UsageError(f"--out {shown_out} is a folder: use a .csv or .json file name")


def nothing_found(named: list[str]) -> str:
    if not named:
        return "no input given: name image files (PNG, JPEG, BMP), folders or .npy arrays"
    where = ", ".join(terminal_safe(n) for n in named[:3]) + (", ..." if len(named) > 3 else "")
    return f"no input found in {where}: folders are searched for .png, .jpg, .jpeg, .bmp and .npy"


# --- finding inputs -------------------------------------------------------------------------


def remember(paths: Iterable[Path | str], named: list[str]) -> Iterator[Path]:
    """The paths, noting the first few in `named` (for the message when nothing is found)."""
    for path in paths:
        if len(named) < 4:
            named.append(shown(path))
        yield Path(path)


def discover(paths: Iterable[Path]) -> Iterator[Path | Failure]:
    """Files named explicitly (always tried), and the matching files under folders named."""
    for path in paths:
        try:
            is_folder = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            is_folder = False  # reading it says why it is missing or unreadable
        if is_folder:
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


def read_input(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(row path, float32 [28, 28] in [0, 1]) per image in the file; RegcliError if unusable.

    The content decides what a file is: a NumPy header makes it an array, anything else must
    decode as PNG, JPEG or BMP.
    """
    label = shown(path)
    with open_regular(path, label) as f:  # closed before anything is yielded
        head = f.read(len(NPY_MAGIC))
        f.seek(0)
        if head == NPY_MAGIC:
            array, scale = open_array(f, label)  # a memory map outlives its file object
        elif path.suffix.lower() in (ARRAY_SUFFIX, ".npz"):
            what = "an .npz archive" if head.startswith(ZIP_MAGIC) else "no NumPy header"
            raise RegcliError(f"{terminal_safe(label)}: {what}, not a .npy array")
        else:
            array, gray = None, read_image(f, label)
    if array is None:
        yield label, mnist_style(gray, terminal_safe(label))
        return
    for start in range(0, len(array), ARRAY_CHUNK):
        block = array[start : start + ARRAY_CHUNK].astype(np.float32)  # one copy, scaled in place
        block *= np.float32(scale)
        for i, image in enumerate(np.clip(block, 0, 1, out=block), start):
            yield f"{label}[{i}]", image


@contextmanager
def open_regular(path: Path, label: str) -> Iterator:
    """Open a regular file for reading; anything else is refused without being opened.

    os.stat comes first because merely opening a FIFO blocks until a writer appears, and opening
    a device can have effects. The open itself is non-blocking and checked again with fstat, so
    a file swapped for a FIFO in between is refused too.
    """
    safe = terminal_safe(label)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            target = terminal_safe(shown(os.readlink(path)))
            raise RegcliError(
                f"{safe}: dangling symlink (its target {target} does not exist)"
            ) from None
        raise RegcliError(f"{safe}: no such file") from None
    except OSError as error:
        raise RegcliError(f"{safe}: cannot read ({error.strerror or first_line(error)})") from None
    if not stat.S_ISREG(mode):
        raise RegcliError(f"{safe}: not a regular file ({file_kind(mode)}); not read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise RegcliError(f"{safe}: cannot read ({error.strerror or first_line(error)})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RegcliError(f"{safe}: not a regular file ({file_kind(mode)}); not read")
        os.set_blocking(fd, True)
        yield f


def file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


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


def open_array(f, label: str) -> tuple[np.ndarray, float]:
    """A .npy of digits -> (memory-mapped [N, 28, 28] array, scale to 0..1), checked first.

    The header is parsed without loading anything (never a pickle), the dtype and shape are
    checked from it, and the values are checked chunk by chunk, so that an unusable array is
    refused with its reason before any of it is predicted.
    """
    safe = terminal_safe(label)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise RegcliError(f"{safe}: .npy format version {version} is not supported")
    except (ValueError, SyntaxError) as error:
        raise RegcliError(f"{safe}: broken .npy header ({first_line(error)})") from None
    if dtype.kind not in "uif":
        raise RegcliError(
            f"{safe}: dtype {dtype} is not pixel values (expected uint8 0..255 or float 0..1)"
        )
    images = (1, *shape) if len(shape) == 2 else shape
    if len(images) != 3 or images[1:] != (SIDE, SIDE):
        raise RegcliError(f"{safe}: array of shape {shape}, expected (N, 28, 28) or (28, 28)")
    if images[0] == 0:
        raise RegcliError(f"{safe}: array of shape {shape} holds no images")
    offset = f.tell()
    needed = offset + math.prod(shape) * dtype.itemsize
    size = os.fstat(f.fileno()).st_size
    if size < needed:
        raise RegcliError(f"{safe}: truncated .npy ({size} bytes, its header needs {needed})")
    order = "F" if fortran_order else "C"
    mapped = np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    array = mapped.reshape(images)
    low, high = math.inf, -math.inf
    for start in range(0, len(array), ARRAY_CHUNK):
        block = np.asarray(array[start : start + ARRAY_CHUNK])
        if dtype.kind == "f" and not np.isfinite(block).all():
            raise RegcliError(f"{safe}: contains NaN or infinite values")
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    if low < 0 or high > 255:
        raise RegcliError(
            f"{safe}: values from {low:g} to {high:g}, expected uint8 0..255 or float 0..1"
        )
    return array, UNIT if dtype == np.uint8 or high > 1 else 1.0


# --- predicting -----------------------------------------------------------------------------


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_batch(predict: Predictor, batch: list) -> Iterator[dict]:
    """One row per entry of the batch, in order; one predictor call for all its images."""
    images = [image for _, image, _ in batch if image is not None]
    probabilities = iter(probabilities_of(predict, images) if images else ())
    for label, image, message in batch:
        if image is None:
            yield {"path": label, "status": "error", "error": message}
            continue
        p = next(probabilities)
        if not np.isfinite(p).all():
            message = f"{terminal_safe(label)}: the model's output is NaN or infinite"
            yield {"path": label, "status": "error", "error": message}
            continue
        top = np.argsort(-p, kind="stable")[:3]
        yield {
            "path": label,
            "status": "ok",
            "prediction": int(top[0]),
            "probability": float(p[top[0]]),
            "top3": [[int(c), round(float(p[c]), 6)] for c in top],
        }


def probabilities_of(predict: Predictor, images: list[np.ndarray]) -> np.ndarray:
    logits = np.asarray(predict(np.stack(images)[:, None]))
    if logits.shape != (len(images), NUM_CLASSES):
        raise RegcliError(
            f"the model returned logits of shape {logits.shape}, "
            f"expected ({len(images)}, {NUM_CLASSES})"
        )
    with np.errstate(all="ignore"):  # a non-finite row is reported as that input's failure
        return np.exp(log_softmax(logits))


# --- writing results ------------------------------------------------------------------------


@contextmanager
def result_file(out: Path | None) -> Iterator[Callable[[dict], None]]:
    """A function writing one row to `out` (or nowhere), inside an atomic write.

    On KeyboardInterrupt the file is completed with the rows so far and still renamed into
    place (then the interrupt goes on); on any other error it is discarded, as every artifact.
    """
    if out is None:
        yield lambda row: None
        return
    interrupted = None
    with atomic_open(out, "w") as f:
        rows = JsonRows(f) if Path(out).suffix.lower() == ".json" else CsvRows(f)
        try:
            yield rows.write
        except KeyboardInterrupt as stop:
            interrupted = stop
        except BaseException:
            rows.discard()
            raise
        rows.finish(complete=interrupted is None)
    if interrupted is not None:
        raise interrupted


class CsvRows:
    """path,status,prediction,probability,top3,error; text cells are safe to open in Excel."""

    def __init__(self, f):
        self.writer = csv.writer(f)
        self.writer.writerow(CSV_COLUMNS)

    def write(self, row: dict) -> None:
        top3 = " ".join(f"{c}:{p:.4f}" for c, p in row.get("top3", []))
        cells = [row.get(column, "") for column in CSV_COLUMNS]
        cells[CSV_COLUMNS.index("top3")] = top3
        self.writer.writerow([csv_cell(c) if isinstance(c, str) else c for c in cells])

    def finish(self, complete: bool) -> None:
        pass

    def discard(self) -> None:
        pass


class JsonRows:
    """{"predictions": [...], "failures": [...], "predicted", "failed", "complete"}.

    Written as it goes, one row a line: predictions straight into the file, failures into a
    temporary file until the predictions list is closed (memory stays bounded). `complete` is
    false when Ctrl-C cut the job short.
    """

    def __init__(self, f):
        self.f, self.predicted, self.failed = f, 0, 0
        # closed by finish or discard, which result_file always calls
        self.failures = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.f.write('{\n  "predictions": [')

    def write(self, row: dict) -> None:
        line = json.dumps(row, allow_nan=False, ensure_ascii=False)
        if row["status"] == "ok":
            self.f.write(("," if self.predicted else "") + "\n    " + line)
            self.predicted += 1
        else:
            self.failures.write(line + "\n")
            self.failed += 1

    def finish(self, complete: bool) -> None:
        self.f.write("\n  ],\n" if self.predicted else "],\n")
        self.f.write('  "failures": [')
        self.failures.seek(0)
        for i, line in enumerate(self.failures):
            self.f.write(("," if i else "") + "\n    " + line.rstrip("\n"))
        self.f.write("\n  ],\n" if self.failed else "],\n")
        counts = f'"predicted": {self.predicted},\n  "failed": {self.failed}'
        self.f.write(f'  {counts},\n  "complete": {json.dumps(complete)}\n}}\n')
        self.discard()

    def discard(self) -> None:
        self.failures.close()


def csv_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one that could start a formula gets a '."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


# --- showing file names ---------------------------------------------------------------------


def shown(path: Path | str | bytes) -> str:
    """A path as text that any UTF-8 file can hold: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def terminal_safe(text: str) -> str:
    """Text that prints as itself on a terminal: control characters (C0, C1, DEL), line and
    paragraph separators, lone surrogates and bidirectional overrides become \\x1b-style
    escapes, so a file name cannot move the cursor, recolour the terminal, forge output lines
    or display as another name."""
    if text.isprintable():
        return text
    return "".join(escaped(c) if unsafe(c) else c for c in text)


def unsafe(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI_CONTROLS


def escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
