"""MNIST on disk: IDX parsing, gzip and md5 checks, corrupt and truncated files, the shipped files'
shapes and sizes."""

import gzip
import hashlib
import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from regcli.core.errors import RegcliError
from regcli.data import mnist as data
from regcli.data.mnist import (
    GENUINE_GZ_SIZE,
    GENUINE_SIZE,
    MIRRORS,
    SPLIT_FILES,
    load_split,
    parse_idx,
    read_idx,
    resolve_data_dir,
)
from tests.conftest import DATA_DIR, tree

RAW_DIR = DATA_DIR / "MNIST" / "raw"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No test depends on the developer's shell, and none can reach the network."""
    monkeypatch.delenv("REGCLI_DATA_DIR", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def zeros_gzip(size: int) -> bytes:
    """size zero bytes, gzipped without ever holding them all in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.compress(bytes(size % len(block))))
    return b"".join(parts) + compressor.flush()


class Server:
    """A stand-in for urllib.request.urlopen: serves bytes per file name, records every URL."""

    def __init__(self, monkeypatch, content=None, headers=None):
        self.urls = []
        self.timeouts = []
        self.content = content or (lambda url: (RAW_DIR / url.rsplit("/", 1)[1]).read_bytes())
        self.headers = headers or {}
        monkeypatch.setattr("urllib.request.urlopen", self)

    def __call__(self, request, timeout=None):
        url = getattr(request, "full_url", request)
        self.urls.append(url)
        self.timeouts.append(timeout)
        body = self.content(url)
        if isinstance(body, Exception):
            raise body
        response = io.BytesIO(body)
        response.headers = self.headers
        return response

    @property
    def files(self):
        return [url.rsplit("/", 1)[1] for url in self.urls]


def test_parse_idx_round_trips_shape_and_values():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = parse_idx(idx_bytes(array))
    assert parsed.dtype == np.uint8 and parsed.flags.writeable
    assert np.array_equal(parsed, array)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda raw: b"\x01" + raw[1:], "bad magic"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "not unsigned bytes"),
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw + b"\x00", "trailing bytes"),
        (lambda raw: raw[:6], "truncated IDX header"),
    ],
    ids=["magic", "dtype", "truncated-data", "trailing", "truncated-header"],
)
def test_parse_idx_rejects_corrupt_files(corrupt, message):
    raw = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))
    with pytest.raises(RegcliError, match=message):
        parse_idx(corrupt(raw), "sample")


def test_read_idx_accepts_gzip_and_plain_and_checks_md5(tmp_path):
    raw = idx_bytes(np.ones((3, 28, 28), dtype=np.uint8))
    plain, packed = tmp_path / "x-idx3-ubyte", tmp_path / "x-idx3-ubyte.gz"
    plain.write_bytes(raw)
    packed.write_bytes(gzip.compress(raw))
    md5 = hashlib.md5(raw).hexdigest()
    assert np.array_equal(read_idx(plain, md5), read_idx(packed, md5))
    with pytest.raises(RegcliError, match="md5 mismatch"):
        read_idx(packed, "0" * 32)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    packed = tmp_path / "t.gz"
    packed.write_bytes(gzip.compress(idx_bytes(np.ones((3, 28, 28))))[:-20])
    with pytest.raises(RegcliError, match="cannot read"):
        read_idx(packed)


def test_real_mnist_loads_with_the_documented_shapes(mnist):
    train, test = mnist
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10_000, 28, 28)
    assert train.labels.dtype == np.int64 and np.unique(train.labels).tolist() == list(range(10))
    # the published pixel statistics hold for the shipped files
    pixels = train.images / 255
    assert pixels.mean() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std() == pytest.approx(0.3081, abs=1e-4)


def test_the_known_sizes_are_those_of_the_shipped_files():
    for name, size in GENUINE_SIZE.items():
        packed = RAW_DIR / f"{name}.gz"
        with gzip.open(packed) as file:
            assert len(file.read()) == size, name
        # the shipped copies are re-compressed (mtime 0): no bigger than the mirrors' files
        assert packed.stat().st_size <= GENUINE_GZ_SIZE[name] <= data._download_cap(name)


def test_foreign_file_with_a_genuine_name_is_refused(tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for name in SPLIT_FILES["test"]:
        (raw_dir / f"{name}.gz").write_bytes((RAW_DIR / f"{name}.gz").read_bytes())
    images = raw_dir / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(images.read_bytes()))
    raw[1000] ^= 0xFF  # one flipped pixel: same size, valid header
    images.write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    with pytest.raises(RegcliError, match="not the genuine MNIST"):
        load_split(tmp_path, "test")


def test_files_in_the_folder_itself_plain_or_gzipped_load(tmp_path, mnist):
    images, labels = SPLIT_FILES["test"]
    (tmp_path / images).write_bytes(gzip.decompress((RAW_DIR / f"{images}.gz").read_bytes()))
    (tmp_path / f"{labels}.gz").write_bytes((RAW_DIR / f"{labels}.gz").read_bytes())
    test = load_split(tmp_path, "test", limit=100)
    assert np.array_equal(test.images, mnist[1].images[:100])
    assert np.array_equal(test.labels, mnist[1].labels[:100])


def test_a_gzip_bomb_is_stopped_after_the_known_size(tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    bomb = raw_dir / "train-labels-idx1-ubyte.gz"
    bomb.write_bytes(zeros_gzip(50 * 2**20))  # ~50 KB that inflate to 50 MB
    (raw_dir / "train-images-idx3-ubyte").write_bytes(b"never read")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(RegcliError) as error:
            load_split(tmp_path, "train")
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(error.value)
    assert str(bomb) in message and "more than 60,008 bytes" in message
    assert "\n" not in message
    # decompressing it all would allocate 50 MB; the cap stops at the label file's 60 KB
    assert peak < 2 * 2**20, f"peak {peak:,} bytes"
    assert seconds < 1


def test_without_a_known_size_the_largest_mnist_size_caps_decompression(tmp_path):
    bomb = tmp_path / "anything.gz"
    bomb.write_bytes(zeros_gzip(data.MAX_IDX_BYTES + 2**20))
    with pytest.raises(RegcliError, match=f"more than {data.MAX_IDX_BYTES:,} bytes"):
        read_idx(bomb)


def test_a_gzip_file_bigger_than_its_content_could_be_is_refused(tmp_path):
    padded = tmp_path / "t10k-labels-idx1-ubyte.gz"
    padded.write_bytes(gzip.compress(b"") * 20_000)  # 400 KB of empty gzip members
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"never read")
    with pytest.raises(RegcliError, match="bytes of gzip for at most 10,008"):
        load_split(tmp_path, "test")


def test_a_plain_file_of_the_wrong_size_is_refused_unread(tmp_path):
    labels = tmp_path / "train-labels-idx1-ubyte"
    with open(labels, "wb") as file:
        file.truncate(200 * 2**20)  # sparse: 200 MB that cost nothing until read
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"never read")
    tracemalloc.start()
    try:
        with pytest.raises(RegcliError) as error:
            load_split(tmp_path, "train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(labels) in str(error.value) and "60,008" in str(error.value)
    assert peak < 2**20, f"peak {peak:,} bytes"
    # a plain file one byte short is refused on its size too, before any content check
    labels.write_bytes(gzip.decompress((RAW_DIR / "train-labels-idx1-ubyte.gz").read_bytes())[:-1])
    with pytest.raises(RegcliError, match="60,007 bytes, the genuine file has 60,008"):
        load_split(tmp_path, "train")


def test_an_arbitrary_plain_file_is_capped_at_the_largest_mnist_size(tmp_path):
    big = tmp_path / "big-idx3-ubyte"
    with open(big, "wb") as file:
        file.truncate(data.MAX_IDX_BYTES + 1)
    with pytest.raises(RegcliError, match="more than the largest MNIST file"):
        read_idx(big)


@pytest.mark.parametrize("before", ["absent", "empty", "with-MNIST"])
def test_missing_files_fail_in_one_line_and_leave_the_folder_as_it_was(
    tmp_path, monkeypatch, before
):
    root = tmp_path / "data"
    if before != "absent":
        root.mkdir()
        (root / "notes.txt").write_text("mine")
    if before == "with-MNIST":
        (root / "MNIST").mkdir()
    snapshot = tree(root)
    server = Server(monkeypatch, lambda url: OSError("[Errno 101] Network is unreachable\nmore"))
    with pytest.raises(RegcliError) as error:
        load_split(root, "test")
    message = str(error.value)
    assert "\n" not in message
    assert f"{root / 'MNIST' / 'raw'} or {root} " in message
    assert "t10k-images-idx3-ubyte[.gz]" in message and "t10k-labels-idx1-ubyte[.gz]" in message
    assert "Network is unreachable" in message and "more" not in message
    assert "--data-dir" in message and "$REGCLI_DATA_DIR" in message
    assert "train" not in message  # only the test split's files were wanted
    # every mirror was tried, in order, for the first file; then it gave up
    assert server.urls == [mirror + "t10k-images-idx3-ubyte.gz" for mirror in MIRRORS]
    assert all(timeout for timeout in server.timeouts)
    assert tree(root) == snapshot


def test_a_download_fetches_only_the_files_of_the_split_asked_for(tmp_path, monkeypatch, mnist):
    server = Server(monkeypatch)
    test = load_split(tmp_path, "test")
    assert server.urls == [MIRRORS[0] + f"{name}.gz" for name in SPLIT_FILES["test"]]
    assert np.array_equal(test.images, mnist[1].images)
    assert np.array_equal(test.labels, mnist[1].labels)
    assert sorted(path.name for path in (tmp_path / "MNIST" / "raw").iterdir()) == [
        f"{name}.gz" for name in SPLIT_FILES["test"]
    ]
    # the files are now there: no second download
    load_split(tmp_path, "test", limit=10)
    assert len(server.urls) == 2


def test_only_the_missing_file_is_downloaded(tmp_path, monkeypatch):
    images, labels = SPLIT_FILES["test"]
    (tmp_path / f"{images}.gz").write_bytes((RAW_DIR / f"{images}.gz").read_bytes())
    server = Server(monkeypatch)
    assert len(load_split(tmp_path, "test")) == 10_000
    assert server.files == [f"{labels}.gz"]
    assert (tmp_path / "MNIST" / "raw" / f"{labels}.gz").is_file()


def test_a_foreign_download_leaves_nothing_behind(tmp_path, monkeypatch):
    def tampered(url):
        raw = bytearray(gzip.decompress((RAW_DIR / url.rsplit("/", 1)[1]).read_bytes()))
        raw[-1] ^= 0xFF
        return gzip.compress(bytes(raw), compresslevel=6)  # within the cap

    server = Server(monkeypatch, tampered)
    with pytest.raises(RegcliError, match=r"md5 mismatch\)+; put the files there"):
        load_split(tmp_path, "test")
    assert len(server.urls) == len(MIRRORS)
    assert tree(tmp_path) == {}


def test_a_failure_after_a_good_file_still_leaves_nothing_behind(tmp_path, monkeypatch):
    def labels_unavailable(url):
        if "labels" in url:
            return TimeoutError("timed out")
        return (RAW_DIR / url.rsplit("/", 1)[1]).read_bytes()

    server = Server(monkeypatch, labels_unavailable)
    with pytest.raises(RegcliError, match=r"failed \(t10k-labels-idx1-ubyte.gz: timed out\)"):
        load_split(tmp_path, "test")
    assert server.files[0] == "t10k-images-idx3-ubyte.gz"  # it arrived, and was dropped again
    assert tree(tmp_path) == {}


def test_the_next_mirror_is_tried_when_one_serves_a_foreign_file(tmp_path, monkeypatch):
    def first_mirror_broken(url):
        if url.startswith(MIRRORS[0]):
            return b"<html>not here</html>"
        return (RAW_DIR / url.rsplit("/", 1)[1]).read_bytes()

    server = Server(monkeypatch, first_mirror_broken)
    assert len(load_split(tmp_path, "test")) == 10_000
    assert [url.startswith(MIRRORS[1]) for url in server.urls] == [False, True, False, True]
    assert not list((tmp_path / "MNIST" / "raw").glob(".*"))  # no temporary files left


def test_an_oversized_download_is_cut_off(tmp_path, monkeypatch):
    cap = data._download_cap("t10k-images-idx3-ubyte")
    Server(monkeypatch, lambda url: bytes(cap + 10_000))
    with pytest.raises(RegcliError, match=f"more than {cap:,} bytes"):
        load_split(tmp_path, "test")
    assert tree(tmp_path) == {}


def test_fetch_stops_reading_at_the_cap(tmp_path, monkeypatch):
    reads = []

    class Endless(io.RawIOBase):
        headers = {}

        def read(self, size=-1):
            reads.append(size)
            return b"\0" * size

    monkeypatch.setattr("urllib.request.urlopen", lambda request, timeout: Endless())
    target = tmp_path / "out"
    with pytest.raises(RegcliError, match="more than 5,000 bytes"):
        data.fetch("https://example.invalid/x", target, 5_000)
    assert sum(reads) == 5_001 and target.stat().st_size <= 5_000
    # a server that announces too much is refused before the body is read
    Server(monkeypatch, lambda url: bytes(10), headers={"Content-Length": "9999999"})
    with pytest.raises(RegcliError, match="announces 9,999,999 bytes"):
        data.fetch("https://example.invalid/x", target, 5_000)


def test_data_dir_precedence(monkeypatch, tmp_path):
    assert str(resolve_data_dir(None)) == "data"
    monkeypatch.setenv("REGCLI_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert str(resolve_data_dir("elsewhere")) == "elsewhere"


def test_limit_takes_the_first_images(mnist):
    limited = load_split(DATA_DIR, "test", limit=7)
    assert np.array_equal(limited.images, mnist[1].images[:7])
    assert np.array_equal(limited.labels, mnist[1].labels[:7])


def test_loading_mnist_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from regcli.data.mnist import load_split; load_split('data', 'test', 5); "
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=DATA_DIR.parent)
