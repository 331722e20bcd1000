"""MNIST from the original IDX files, read and verified here, returned as numpy arrays.

We parse IDX ourselves rather than through torchvision so that a truncated, foreign or
tampered file is a clear error instead of a silent misread: the header (magic number, dimensions)
must match the byte count, and the content must match the md5 of the genuine file. numpy, not
torch, so that ONNX inference runs without loading PyTorch; the trainer moves them to its device.

Every read is bounded by the known size of the genuine file: a gzip file is decompressed
incrementally and refused as soon as more comes out than the genuine file holds (a gzip bomb
costs a few kilobytes of memory, not gigabytes), and a plain file of the wrong size is refused
before it is read. Missing files are downloaded with the standard library, only those the
command needs, each into a temporary file that is renamed into place once its md5 checks out.
"""

import gzip
import hashlib
import math
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from regcli.core.errors import RegcliError, first_line
from regcli.core.files import FileProblem, open_regular

DATA_DIR_ENV = "REGCLI_DATA_DIR"
IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST uses
GZIP_MAGIC = b"\x1f\x8b"

# name of the uncompressed IDX file -> md5 of its content (the widely published originals)
GENUINE_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# name -> size of the uncompressed genuine file in bytes (IDX header + one byte per pixel/label)
GENUINE_SIZE = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
# name -> size of the .gz file the mirrors serve; re-compressed copies (like the ones shipped in
# data/, mtime 0, maximum compression) are a little smaller, so these are caps, not equalities
GENUINE_GZ_SIZE = {
    "train-images-idx3-ubyte": 9_912_422,
    "train-labels-idx1-ubyte": 28_881,
    "t10k-images-idx3-ubyte": 1_648_877,
    "t10k-labels-idx1-ubyte": 4_542,
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# the most read_idx decompresses or reads when no genuine size applies (an arbitrary IDX file)
MAX_IDX_BYTES = max(GENUINE_SIZE.values())
_SIZE_BY_MD5 = {GENUINE_MD5[name]: size for name, size in GENUINE_SIZE.items()}

# where missing files are downloaded from, tried in this order (the mirrors torchvision uses)
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_TIMEOUT = 30  # seconds one connection may wait for the server
DOWNLOAD_DEADLINE = 600  # seconds one file may take in all (a server that trickles bytes)
USER_AGENT = "regcli (MNIST download)"  # some mirrors refuse Python's default agent

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, 28, 28], 0 = background (a tensor on the training device)
    labels: np.ndarray  # int64 [N], 0..9

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.images[:n], self.labels[:n])


# --- the images a run trains and validates on ----------------------------------------------------

SUBSET_KEY = b"regcli subset"  # salts the hash that orders a seed's images (change: new subsets)
MASK64 = np.uint64(2**64 - 1)


def hashed_stream(count: int, salt: bytes) -> np.ndarray:
    """`count` 64-bit numbers, a pure function of `salt`: splitmix64 of (a key hashed from the
    salt + index), in numpy (no random generator whose stream a new numpy or torch might
    change). Subsets and shifted test sets draw their chance from it."""
    key = int.from_bytes(hashlib.sha256(salt).digest()[:8], "big")
    with np.errstate(over="ignore"):
        z = np.arange(count, dtype=np.uint64) + np.uint64(key)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def image_ranks(count: int, seed: int) -> np.ndarray:
    """A seed's order of `count` images."""
    return hashed_stream(count, SUBSET_KEY + str(seed).encode())


def balanced_counts(images: int, classes: int = 10) -> list[int]:
    """`images` split over the classes as evenly as whole numbers allow (the first get the rest)."""
    share, rest = divmod(images, classes)
    return [share + (c < rest) for c in range(classes)]


def subsets(
    labels: np.ndarray, seed: int, train_size: int | None, val_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A run's training and validation images, as sorted indices into `labels` (the pool).

    Each digit's images are ordered by the seed (`image_ranks`); the validation split takes the
    first of them, class-balanced, and the training subset the next ones, class-balanced
    (or, without train_size, every image the validation split left). So the subsets depend only
    on the seed and the sizes: the same in every cell of a sweep, a smaller size's subset inside
    a larger one's, and never an image in both. With neither size, the training images are the
    whole pool in order (as before subsets existed).
    """
    if train_size is None and not val_size:
        return np.arange(len(labels)), np.arange(0)
    ranks = image_ranks(len(labels), seed)
    train_counts = balanced_counts(train_size) if train_size else None
    val_parts, train_parts = [], []
    for digit, wanted in enumerate(balanced_counts(val_size)):
        members = np.flatnonzero(labels == digit)
        members = members[np.argsort(ranks[members], kind="stable")]
        need = wanted + (train_counts[digit] if train_counts else 0)
        if len(members) < need:
            raise RegcliError(
                f"the training pool has {len(members)} images of a {digit}; a class-balanced "
                f"--train-size {train_size} with --val-size {val_size} needs {need}"
            )
        val_parts.append(members[:wanted])
        train_parts.append(members[wanted:need] if train_counts else members[wanted:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))


def parse_idx(raw: bytes | bytearray, source: str = "IDX data") -> np.ndarray:
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
    # a writable copy of its own: torch.from_numpy warns about read-only memory
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def read_idx(
    path: Path, expected_md5: str | None = None, expected_size: int | None = None
) -> np.ndarray:
    """Read an IDX file, gzipped or not, and check its uncompressed content against a md5.

    expected_size is the exact uncompressed size; it defaults to the genuine file's when
    expected_md5 is one of GENUINE_MD5. Without it, anything over MAX_IDX_BYTES is refused.
    Either way no more than that is ever decompressed or read.
    """
    path = Path(path)
    if expected_size is None and expected_md5 is not None:
        expected_size = _SIZE_BY_MD5.get(expected_md5)
    try:
        with open_regular(path, None) as file:  # a FIFO or a device is refused, not read
            packed = file.read(2) == GZIP_MAGIC
            file.seek(0)
            if packed:
                raw = _gunzip(file, path, expected_size)
            else:
                raw = _read_plain(file, path, expected_size)
    except FileProblem as error:
        raise RegcliError(str(error)) from None
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise RegcliError(f"{path}: cannot read ({first_line(error)})") from error
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise RegcliError(f"{path}: content is not the genuine MNIST file (md5 mismatch)")
    return parse_idx(raw, str(path))


def _gunzip(file, path: Path, expected_size: int | None) -> bytearray:
    """Decompress incrementally; stop as soon as more than the allowed size comes out."""
    limit = MAX_IDX_BYTES if expected_size is None else expected_size
    # deflate never expands data by more than a few bytes per block, so a .gz much bigger than
    # its content (e.g. endless empty gzip members) is not worth reading either
    packed_size = os.fstat(file.fileno()).st_size
    if packed_size > limit + limit // 100 + 65_536:
        raise RegcliError(
            f"{path}: {packed_size:,} bytes of gzip for at most {limit:,} bytes of IDX data; "
            "refused"
        )
    out = bytearray()
    with gzip.GzipFile(fileobj=file) as unpacked:
        while len(out) <= limit:
            chunk = unpacked.read(min(_CHUNK, limit + 1 - len(out)))  # decompresses only that
            if not chunk:
                break
            out += chunk
    if len(out) > limit:
        what = "the genuine file's size" if expected_size is not None else "the largest MNIST file"
        raise RegcliError(
            f"{path}: decompresses to more than {limit:,} bytes ({what}); refused "
            "(a corrupt file or a gzip bomb)"
        )
    if expected_size is not None and len(out) != expected_size:
        raise RegcliError(
            f"{path}: decompresses to {len(out):,} bytes, the genuine file has {expected_size:,}"
        )
    return out


def _read_plain(file, path: Path, expected_size: int | None) -> bytes:
    """Check an uncompressed file's size before reading it, then read no more than that."""
    size = os.fstat(file.fileno()).st_size
    if expected_size is not None and size != expected_size:
        raise RegcliError(
            f"{path}: {size:,} bytes, the genuine file has {expected_size:,}; refused unread"
        )
    limit = MAX_IDX_BYTES if expected_size is None else expected_size
    if size > limit:
        raise RegcliError(
            f"{path}: {size:,} bytes, more than the largest MNIST file ({limit:,}); refused unread"
        )
    raw = file.read(limit + 1)  # the file may have grown since the check
    if len(raw) > limit:
        raise RegcliError(f"{path}: grew past {limit:,} bytes while being read")
    return raw


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    """--data-dir, else $REGCLI_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data")


def load_split(data_dir: Path | str | None, split: str, limit: int | None = None) -> Split:
    """Load the `train` or `test` split from data_dir, downloading only the files it lacks."""
    root = resolve_data_dir(data_dir)
    names = SPLIT_FILES[split]
    paths = {name: _find(root, name) for name in names}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        _download(root, missing)
        paths = {name: _find(root, name) for name in names}
    images_name, labels_name = names
    # labels first: the small file fails fast if it is foreign
    labels = read_idx(paths[labels_name], GENUINE_MD5[labels_name], GENUINE_SIZE[labels_name])
    images = read_idx(paths[images_name], GENUINE_MD5[images_name], GENUINE_SIZE[images_name])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RegcliError(f"{root}: images and labels of the {split} split do not match")
    return Split(images, labels.astype(np.int64)).head(limit)


def _search_folders(root: Path) -> tuple[Path, Path]:
    """Where torchvision keeps the files (MNIST/raw), then the folder itself."""
    return root / "MNIST" / "raw", root


def _find(root: Path, name: str) -> Path | None:
    """The first of <root>/MNIST/raw and <root> that holds the file, .gz or not."""
    for folder in _search_folders(root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if os.path.lexists(candidate):  # a file, or something that is not: read_idx says
                return candidate
    return None


def fetch(url: str, target: Path, max_bytes: int, timeout: float = DOWNLOAD_TIMEOUT) -> None:
    """Download url into target (overwritten), refusing more than max_bytes.

    The one function that touches the network: tests replace it (or urllib.request.urlopen).
    """
    import urllib.request  # here, not at the top: most commands never download

    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise RegcliError(f"the server announces {int(declared):,} bytes, over {max_bytes:,}")
        received = 0
        while chunk := response.read(min(_CHUNK, max_bytes + 1 - received)):
            received += len(chunk)
            if received > max_bytes:
                raise RegcliError(f"more than {max_bytes:,} bytes, refused")
            out.write(chunk)
            if time.monotonic() > deadline:
                raise RegcliError(f"took more than {DOWNLOAD_DEADLINE} s")


def _download_cap(name: str) -> int:
    """The most bytes accepted for name's .gz: the published size plus 10%."""
    return GENUINE_GZ_SIZE[name] * 11 // 10


def _download(root: Path, names: Sequence[str]) -> None:
    """Download names (uncompressed names, as in SPLIT_FILES) as .gz into <root>/MNIST/raw.

    All or nothing: each file goes to a temporary file first, and only when every one has
    arrived and matches its md5 are they renamed into place. On any failure the temporary files
    and the folders made for them are removed, and one line says what happened.
    """
    raw_dir = _search_folders(root)[0]
    created = []  # folders this call makes, deepest first
    folder = raw_dir
    while not folder.exists() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    temporary: dict[str, Path] = {}
    placed: list[Path] = []
    done = False
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            temp = raw_dir / f".{name}.gz.{os.getpid()}-{os.urandom(4).hex()}.part"
            temp.open("xb").close()  # ours alone; made with the umask, unlike mkstemp's 0600
            temporary[name] = temp
            _download_one(name, temp)
        for name in names:
            target = raw_dir / f"{name}.gz"
            os.replace(temporary[name], target)
            del temporary[name]
            placed.append(target)
        done = True
    except Exception as error:  # offline, refused, foreign content, disk full: one line
        raise RegcliError(_not_found_message(root, names, error)) from error
    finally:
        if not done:  # leave the data folder exactly as it was
            for path in [*temporary.values(), *placed]:
                path.unlink(missing_ok=True)
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:  # not ours any more (someone put something there), or gone
                    break


def _download_one(name: str, temp: Path) -> None:
    """Fetch name's .gz into temp from the first mirror that serves the genuine file."""
    file = f"{name}.gz"
    failures = []
    for mirror in MIRRORS:
        try:
            fetch(mirror + file, temp, _download_cap(name))
            read_idx(temp, GENUINE_MD5[name], GENUINE_SIZE[name])  # bounded gunzip, then md5
            return
        except Exception as error:
            reason = first_line(error).removeprefix(f"{temp}: ")
            failures.append((urlsplit(mirror).hostname, reason))
    reasons = {reason for _, reason in failures}
    if len(reasons) == 1:
        detail = reasons.pop()
    else:
        detail = "; ".join(f"{host}: {reason}" for host, reason in failures)
    raise RegcliError(f"{file}: {detail}")


def _not_found_message(root: Path, names: Sequence[str], error: BaseException) -> str:
    raw_dir, folder = _search_folders(root)
    looked_for = ", ".join(f"{name}[.gz]" for name in names)
    files = ", ".join(f"{name}.gz" for name in names)
    return (
        f"MNIST not found in {raw_dir} or {folder} (looked for {looked_for}); "
        f"downloading {files} failed ({first_line(error)}); "
        f"put the files there, or point --data-dir or ${DATA_DIR_ENV} at them"
    )
