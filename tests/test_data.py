import gzip
import hashlib
import struct

import numpy as np
import pytest

from regcli.data import SPLIT_FILES, load_split, parse_idx, read_idx, resolve_data_dir
from regcli.errors import RegcliError
from tests.conftest import DATA_DIR


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


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


def test_foreign_file_with_a_genuine_name_is_refused(tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for name in SPLIT_FILES["test"]:
        (raw_dir / f"{name}.gz").write_bytes(
            (DATA_DIR / "MNIST" / "raw" / f"{name}.gz").read_bytes()
        )
    images = raw_dir / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(images.read_bytes()))
    raw[1000] ^= 0xFF  # one flipped pixel: same size, valid header
    images.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(RegcliError, match="not the genuine MNIST"):
        load_split(tmp_path, "test")


def test_missing_files_try_the_download_then_fail_clearly(tmp_path, monkeypatch):
    attempts = []

    class OfflineMNIST:
        def __init__(self, root, train, download):
            attempts.append(root)
            raise RuntimeError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.MNIST", OfflineMNIST)
    with pytest.raises(RegcliError) as error:
        load_split(tmp_path, "train")
    assert attempts == [str(tmp_path)]
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and "--data-dir" in message
    assert "network is unreachable" in message


def test_data_dir_precedence(monkeypatch, tmp_path):
    assert str(resolve_data_dir(None)) == "data"
    monkeypatch.setenv("REGCLI_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert str(resolve_data_dir("elsewhere")) == "elsewhere"


def test_limit_takes_the_first_images(mnist):
    limited = load_split(DATA_DIR, "test", limit=7)
    assert np.array_equal(limited.images, mnist[1].images[:7])
    assert np.array_equal(limited.labels, mnist[1].labels[:7])
