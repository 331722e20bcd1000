"""`regcli predict` as a batch job (regcli.inference.predict): many inputs, some broken or hostile,
one row each; arrays read in bounded chunks; Ctrl-C keeps the rows so far."""

import json
import os
import struct
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from regcli.core.errors import Interrupted, RegcliError, UsageError
from regcli.core.text import terminal_safe
from regcli.inference import inputs
from regcli.inference.predict import predict_files
from tests.predict_support import (
    EPS,
    photo,
    png_bytes,
    png_declaring,
    read_out,
    run,
)


def npy_declaring(shape: str, descr: str = "|u1", data: bytes = b"") -> bytes:
    """A .npy file whose header says `shape` (written as is), followed by `data`."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"  # 10-byte prefix, aligned to 64 bytes
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


BAD = {  # input (relative to the folder) -> the reason its row must give
    "text.png": "not a PNG, JPEG or BMP image",
    "truncated.png": "cannot decode the image",
    "bomb.png": "13000 x 13000 pixels is over the 40-megapixel limit",
    "huge-bomb.png": "over the 40-megapixel limit",
    "eps.png": "not a PNG, JPEG or BMP image",
    "pipe.png": "not a regular file (a FIFO)",
    "gone.png": "dangling symlink",
    "archive.npy": "an .npz archive, not a .npy array",
    "bool.npy": "dtype bool is not pixel values",
    "complex.npy": "dtype complex128 is not pixel values",
    "nan.npy": "contains NaN or infinite values",
    "object.npy": "dtype object is not pixel values",
    "shape.npy": "array of shape (2, 27, 27), expected (N, 28, 28) or (28, 28)",
    "../named-pipe": "not a regular file (a FIFO)",
    "../missing.png": "no such file",
}


def good_inputs(folder: Path, tmp_path: Path, images: np.ndarray) -> bytes:
    """Seven readable digits (a 7, a 2, a 16-bit 1, an array of 0, 4, 1, a 7 named .dat) and
    a text file a folder search skips; returns the good PNG's bytes."""
    (folder / "deeper").mkdir(parents=True)
    photo(images[0]).save(folder / "seven.png")
    photo(images[1], (90, 140)).save(folder / "deeper" / "two.JPG", quality=90)
    sixteen_bit = ((255 - images[2].astype(np.uint16)) * 257).astype(np.uint16)  # a 1, 16-bit
    Image.fromarray(sixteen_bit).save(folder / "one_16bit.png")
    np.save(folder / "digits.npy", images[3:6])  # 0, 4, 1
    (folder / "notes.txt").write_text("not an input: a folder search skips it")
    good_png = png_bytes(photo(images[0]))
    (tmp_path / "seven.dat").write_bytes(good_png)  # named explicitly: content decides
    return good_png


def bad_inputs(folder: Path, tmp_path: Path, images: np.ndarray, good_png: bytes) -> None:
    """Every input of BAD, made as its name says."""
    (folder / "text.png").write_text("hello, I am text\n")
    (folder / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (folder / "bomb.png").write_bytes(png_declaring(13_000, 13_000))
    (folder / "huge-bomb.png").write_bytes(png_declaring(20_000, 20_000))  # Pillow refuses too
    (folder / "eps.png").write_bytes(EPS)
    with Image.open(folder / "eps.png") as image:  # really EPS, which Pillow would open
        assert image.format == "EPS"
    os.mkfifo(folder / "pipe.png")
    os.mkfifo(tmp_path / "named-pipe")
    (folder / "gone.png").symlink_to(tmp_path / "no-such-target.png")
    with (folder / "archive.npy").open("wb") as f:
        np.savez(f, images=images[:2])
    np.save(folder / "bool.npy", images[:2] > 128)
    np.save(folder / "complex.npy", images[:2].astype(np.complex128))
    nan = images[:2] / 255.0
    nan[1, 5, 5] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "object.npy", np.array([images[0], None], dtype=object), allow_pickle=True)
    np.save(folder / "shape.npy", np.zeros((2, 27, 27), np.uint8))


@contextmanager
def eps_watched():
    """Yields the list of EPS files Pillow tried to open (Ghostscript could follow): none."""
    opened, original_open = [], EpsImagePlugin.EpsImageFile._open

    def spy(self):
        opened.append(self)
        return original_open(self)

    EpsImagePlugin.EpsImageFile._open = spy
    try:
        yield opened
    finally:
        EpsImagePlugin.EpsImageFile._open = original_open


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_good_and_bad_inputs_together(predictor, test_split, tmp_path, suffix):
    """Every good input predicted, every bad one a one-line failure with its reason."""
    folder, images = tmp_path / "inputs", test_split.images
    bad_inputs(folder, tmp_path, images, good_inputs(folder, tmp_path, images))
    out = tmp_path / f"results{suffix}"
    paths = [folder, tmp_path / "seven.dat", tmp_path / "named-pipe", tmp_path / "missing.png"]
    with eps_watched() as eps_opened:
        predicted, failed, rows, failures = run(predictor, paths, out)
    assert not eps_opened
    predictions = {Path(r["path"]).name: r["prediction"] for r in rows}
    assert predictions == {
        "seven.png": 7,
        "two.JPG": 2,
        "one_16bit.png": 1,
        "digits.npy[0]": 0,
        "digits.npy[1]": 4,
        "digits.npy[2]": 1,
        "seven.dat": 7,
    }
    assert (predicted, failed) == (7, len(BAD))
    reasons = {os.path.relpath(path, folder): message for path, message in failures}
    assert set(reasons) == set(BAD)
    for name, reason in BAD.items():
        message = reasons[name]
        assert reason in message and str(folder / name).replace("inputs/../", "") in message
        assert "\n" not in message
    assert [r["path"] for r in rows][:3] == [
        str(folder / "deeper" / "two.JPG"),  # sorted: deeper/ before digits.npy
        *(f"{folder / 'digits.npy'}[{i}]" for i in range(2)),
    ]
    written = read_out(out)
    assert len(written) == predicted + failed
    assert {r["path"] for r in written} == {r["path"] for r in rows} | {p for p, _ in failures}
    statuses = {r["path"]: r["status"] for r in written}
    assert all(statuses[r["path"]] == "ok" for r in rows)
    assert all(statuses[p] == "error" for p, _ in failures)
    if suffix == ".json":
        assert json.loads(out.read_text(encoding="utf-8"))["complete"] is True
    by_path = {r["path"]: r for r in written}
    assert by_path[str(folder / "nan.npy")]["error"].endswith("contains NaN or infinite values")


def test_csv_cells_cannot_start_a_formula(predictor, test_split, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths: the cell starts with the file's name
    photo(test_split.images[0]).save("=cmd.png")
    Path("+evil.png").write_text("=HYPERLINK(...)")
    run(predictor, [Path("=cmd.png"), Path("+evil.png")], Path("results.csv"))
    ok, failed = read_out(Path("results.csv"))
    assert (ok["path"], ok["status"], ok["prediction"]) == ("'=cmd.png", "ok", "7")
    assert (failed["path"], failed["status"]) == ("'+evil.png", "error")
    assert failed["error"].startswith("'+evil.png: not a PNG, JPEG or BMP image")
    run(predictor, [Path("=cmd.png")], Path("results.json"))
    assert read_out(Path("results.json"))[0]["path"] == "=cmd.png"  # JSON keeps the name


def test_terminal_safe_escapes_controls(predictor, tmp_path):
    assert terminal_safe("digit_7.png") == "digit_7.png"
    assert terminal_safe("ünïcode 七.png") == "ünïcode 七.png"
    assert terminal_safe("a\x1b[2Jb\nc\rd\te\x7f\x9b") == "a\\x1b[2Jb\\x0ac\\x0dd\\x09e\\x7f\\x9b"
    assert terminal_safe("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    name = "bad\n\x1b[31mname.png"
    (tmp_path / name).write_text("not an image")
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.png"), "wb") as f:
        f.write(b"not UTF-8, not an image")  # a Latin-1 name: its path is no UTF-8 text
    out = tmp_path / "results.json"
    _, failed, _, failures = run(predictor, [tmp_path], out)
    assert failed == 2
    (path, message), (latin1_path, _) = failures
    assert path == str(tmp_path / name)  # the row keeps the real name
    assert "\n" not in message and "\x1b" not in message
    assert "bad\\x0a\\x1b[31mname.png: not a PNG, JPEG or BMP image" in message
    assert latin1_path == f"{tmp_path}/caf\\xe9.png"
    assert [r["path"] for r in read_out(out)] == [path, latin1_path]


def test_rows_stream_before_later_inputs_are_read(predictor, test_split, tmp_path):
    """Rows leave batch by batch: the first rows arrive before the last files are even named."""
    for i in range(6):
        photo(test_split.images[i]).save(tmp_path / f"{i}.png")
    rows_seen_when_named = []
    rows, batches = [], []

    def paths():
        for i in range(6):
            rows_seen_when_named.append(len(rows))
            yield tmp_path / f"{i}.png"

    def spy(images):
        batches.append(len(images))
        return predictor(images)

    counts = predict_files(spy, paths(), None, on_row=rows.append, batch_size=2)
    assert counts == (6, 0)
    assert batches == [2, 2, 2]
    assert rows_seen_when_named == [0, 0, 2, 2, 4, 4]
    assert [r["prediction"] for r in rows] == test_split.labels[:6].tolist()


def test_a_large_array_is_streamed_not_loaded(tmp_path):
    """A .npy is read and converted a chunk at a time: memory stays far below its size."""
    count = 12_000  # 9.4 MB as uint8 on disk, 37.6 MB as float32
    path = tmp_path / "many.npy"
    np.save(path, np.full((count, 28, 28), 200, dtype=np.uint8))
    predicted = []
    tracemalloc.start()
    try:
        counts = predict_files(
            lambda images: np.zeros((len(images), 10), np.float32),
            [path], None, on_row=lambda row: predicted.append(1), batch_size=64,
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts == (count, 0) and len(predicted) == count
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB"


def test_a_hostile_npy_header_is_one_failure(predictor, test_split, tmp_path):
    """Negative, non-integer, boolean or absurd shapes: one error row each, the batch goes on."""
    photo(test_split.images[0]).save(tmp_path / "a_seven.png")
    pixels = bytes(2 * 28 * 28)
    bad = {
        "negative.npy": ("(-1, 28, 28)", "invalid shape (-1, 28, 28) in the .npy header"),
        "negative_side.npy": ("(2, -28, 28)", "invalid shape (2, -28, 28)"),
        "boolean.npy": ("(True, 28, 28)", "invalid shape (True, 28, 28)"),
        "text.npy": ("('2', 28, 28)", "broken .npy header"),
        "float.npy": ("(2.0, 28, 28)", "broken .npy header"),
        "huge.npy": (f"({2**70}, 28, 28)", "truncated .npy"),
        "not_a_tuple.npy": ("[2, 28, 28]", "broken .npy header"),
    }
    for name, (shape, _) in bad.items():
        (tmp_path / name).write_bytes(npy_declaring(shape, data=pixels))
    np.save(tmp_path / "z_digits.npy", test_split.images[:2])
    predicted, failed, rows, failures = run(predictor, [tmp_path])
    assert [Path(r["path"]).name for r in rows] == [
        "a_seven.png",
        "z_digits.npy[0]",
        "z_digits.npy[1]",
    ]
    assert [r["prediction"] for r in rows] == [7, 7, 2]
    reasons = {Path(path).name: message for path, message in failures}
    assert set(reasons) == set(bad) and failed == len(bad)
    for name, (_, says) in bad.items():
        assert reasons[name].startswith(f"{tmp_path / name}: ") and says in reasons[name], name
        assert "\n" not in reasons[name]


@pytest.mark.parametrize("change", ["shrinks", "turns NaN"])
def test_an_array_changed_while_read_is_one_failure(test_split, tmp_path, monkeypatch, change):
    """Read without a memory map: a .npy cut short (or rewritten) while its images are being
    predicted is an error row after the rows it gave, not a SIGBUS, and the batch goes on."""
    monkeypatch.setattr(inputs, "ARRAY_CHUNK", 2)
    path = tmp_path / "digits.npy"
    np.save(path, test_split.images[:6].astype(np.float32) / 255)
    photo(test_split.images[0]).save(tmp_path / "seven.png")

    def tamper(row):
        if row["path"] == f"{path}[0]":
            if change == "shrinks":
                os.truncate(path, path.stat().st_size - 3 * 28 * 28 * 4)
            else:
                with path.open("r+b") as f:
                    f.seek(-4, os.SEEK_END)  # the last pixel of image 5
                    f.write(np.float32(np.nan).tobytes())

    rows, failures = [], []
    counts = predict_files(
        lambda images: np.eye(10, dtype=np.float32)[np.zeros(len(images), int)],
        [path, tmp_path / "seven.png"], on_row=lambda row: (rows.append(row), tamper(row)),
        on_failure=lambda path, message: failures.append((path, message)), batch_size=2,
    )  # fmt: skip
    # the chunks read before the change give their rows, the next one fails the file
    read_before = 2 if change == "shrinks" else 4
    assert [r["path"] for r in rows] == [
        *(f"{path}[{i}]" for i in range(read_before)),
        str(tmp_path / "seven.png"),
    ]
    assert counts == (read_before + 1, 1)
    says = "cut short while being read" if change == "shrinks" else "changed while being read"
    assert failures == [(str(path), failures[0][1])] and says in failures[0][1]


def test_fortran_order_and_single_image_arrays(predictor, test_split, tmp_path):
    """A Fortran-order .npy is gathered pixel by pixel; a (28, 28) array is one image."""
    images = test_split.images[:5]
    np.save(tmp_path / "a_c.npy", images)
    np.save(tmp_path / "b_fortran.npy", np.asfortranarray(images))
    np.save(tmp_path / "c_one.npy", np.asfortranarray(images[1]))
    assert np.load(tmp_path / "b_fortran.npy").flags.f_contiguous
    _, failed, rows, _ = run(predictor, [tmp_path])
    assert failed == 0
    predictions = [r["prediction"] for r in rows]
    assert predictions == [*test_split.labels[:5], *test_split.labels[:5], test_split.labels[1]]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_ctrl_c_keeps_the_rows_so_far(predictor, test_split, tmp_path, suffix):
    for i in range(6):
        photo(test_split.images[i]).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_text("not an image")
    out = tmp_path / "out" / f"results{suffix}"
    out.parent.mkdir()
    out.write_text("an older result, to be replaced")
    seen = []

    def interrupt_at_third(row):
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    paths = [tmp_path / "bad.png", *(tmp_path / f"{i}.png" for i in range(6))]
    with pytest.raises(Interrupted) as stop:
        predict_files(predictor, paths, out, on_row=interrupt_at_third, batch_size=2)
    assert stop.value.exit_code == 130
    assert str(stop.value) == (
        f"stopped by Ctrl-C after 4 inputs (3 predicted, 1 failed); {out} keeps their rows, "
        "marked incomplete"
    )
    written = read_out(out)
    assert [r["path"] for r in written if r["status"] == "ok"] == [r["path"] for r in seen]
    assert sorted(r["status"] for r in written) == ["error", "ok", "ok", "ok"]
    if suffix == ".json":
        assert json.loads(out.read_text())["complete"] is False
    assert os.listdir(out.parent) == [out.name]  # no temporary file left behind


def test_ctrl_c_without_out_says_nothing_was_written(predictor, test_split, tmp_path):
    photo(test_split.images[0]).save(tmp_path / "seven.png")

    def interrupt(images):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"after 0 inputs \(0 predicted, 0 failed\); nothing"):
        predict_files(interrupt, [tmp_path / "seven.png"])
    one = [tmp_path / "seven.png"] * 2
    with pytest.raises(Interrupted) as stop:
        predict_files(predictor, one, on_row=lambda row: exec("raise KeyboardInterrupt"))
    assert str(stop.value).startswith("stopped by Ctrl-C after 1 input (1 predicted, 0 failed);")


def test_no_input_found_is_a_usage_error(predictor, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "unsupported").mkdir()
    (tmp_path / "unsupported" / "notes.txt").write_text("text")
    (tmp_path / "unsupported" / "scan.tiff").write_bytes(b"II*\0")
    out = tmp_path / "results.csv"
    for paths, says in [
        ([tmp_path / "empty"], "no input found in"),
        ([tmp_path / "unsupported", tmp_path / "empty"], "no input found in"),
        ([], "no input given"),
    ]:
        with pytest.raises(UsageError, match=says):
            predict_files(predictor, paths, out)
    assert not out.exists()
    # a file named explicitly that cannot be read is a failure (exit 1), not a usage error
    assert run(predictor, [tmp_path / "missing.png"], out)[:2] == (0, 1)
    assert read_out(out)[0]["status"] == "error"


def test_out_is_checked_before_any_work(tmp_path):
    def never(images):
        raise AssertionError("predicted despite a bad --out")

    (tmp_path / "a.png").write_text("x")
    with pytest.raises(UsageError, match="--out .*results.txt: use a .csv or .json"):
        predict_files(never, [tmp_path], tmp_path / "results.txt")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        predict_files(never, [tmp_path], tmp_path / "folder.csv")


def test_folder_loops_are_reported_once(predictor, test_split, tmp_path):
    photo(test_split.images[0]).save(tmp_path / "seven.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path)  # sub/up/sub/up/... forever
    predicted, failed, rows, failures = run(predictor, [tmp_path])
    assert (predicted, failed) == (1, 1)
    assert "folder loop" in failures[0][1] and failures[0][0] == str(tmp_path / "sub" / "up")


def test_a_model_gone_wrong_is_reported_per_row(test_split, tmp_path):
    np.save(tmp_path / "two.npy", test_split.images[:2])

    def half_nan(images):
        logits = np.zeros((len(images), 10), np.float32)
        logits[1] = np.nan
        return logits

    predicted, failed, _, failures = run(half_nan, [tmp_path / "two.npy"])
    assert (predicted, failed) == (1, 1) and "NaN or infinite" in failures[0][1]
    with pytest.raises(RegcliError, match="logits of shape"):
        predict_files(lambda images: np.zeros((len(images), 3)), [tmp_path / "two.npy"])
