"""Shifted test sets: each shift is deterministic and changes the images as the README says, and
`evaluate --shift` names the shift in its table and JSON, on both backends."""

import json
import math

import numpy as np
import pytest

from regcli.core.config import ShiftKind
from regcli.data.shifts import Shift, parse_shift, parse_shifts
from tests.conftest import invoke, one_line_error


def blank(value: int = 0) -> np.ndarray:
    return np.full((1, 28, 28), value, dtype=np.uint8)


@pytest.mark.parametrize("text", ["rotate:30", "noise:0.3", "blur:1", "erase:8"])
def test_each_shift_is_deterministic_and_keeps_the_shape(text, mnist):
    images = mnist[1].images[:200]
    shifted = parse_shift(text).apply(images)
    assert shifted.dtype == np.uint8 and shifted.shape == images.shape
    assert np.array_equal(shifted, parse_shift(text).apply(images))  # the same every time
    assert not np.array_equal(shifted, images)  # and it does change them
    assert np.array_equal(images, mnist[1].images[:200])  # the input is left alone


def test_rotate_turns_counter_clockwise_about_the_centre():
    image = blank()
    image[0, 2, 20] = 255  # above and right of the centre (13.5, 13.5)
    turned = parse_shift("rotate:90").apply(image)[0]
    assert tuple(np.argwhere(turned == 255)[0]) == (7, 2)  # now above and left
    assert np.array_equal(parse_shift("rotate:0").apply(image), image)
    assert np.array_equal(parse_shift("rotate:180").apply(image)[0, 25, 7], 255)


def test_noise_has_the_stated_standard_deviation_and_no_mean():
    grey = blank(128)
    added = parse_shift("noise:0.1").apply(np.repeat(grey, 50, 0)).astype(float) / 255 - 128 / 255
    assert abs(added.mean()) < 0.002 and added.std() == pytest.approx(0.1, abs=0.003)
    assert parse_shift("noise:1").apply(grey).max() <= 255  # clipped, never wrapped


def test_blur_spreads_a_point_as_a_normalised_gaussian():
    image = blank()
    image[0, 14, 14] = 200
    blurred = parse_shift("blur:1").apply(image)[0].astype(float)
    centre = 200 * (1 / sum(math.exp(-(k**2) / 2) for k in range(-3, 4))) ** 2
    assert blurred[14, 14] == pytest.approx(centre, abs=0.5)
    assert blurred.sum() == pytest.approx(200, abs=6)  # rounding of 49 pixels
    assert blurred[14, 13] == blurred[14, 15] == blurred[13, 14]  # symmetric


def test_erase_clears_one_square_of_the_stated_side_that_fits():
    erased = parse_shift("erase:8").apply(np.repeat(blank(255), 30, 0))
    for image in erased:
        rows, cols = np.nonzero(image == 0)
        assert len(rows) == 64 and rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7
    assert len({tuple(np.argwhere(i == 0)[0]) for i in erased}) > 5  # placed per image


def test_shift_names_and_bad_shifts():
    assert [s.name for s in parse_shifts(["rotate:30,noise:0.3", "rotate:30"])] == [
        "rotate:30",
        "noise:0.3",
    ]
    assert parse_shifts(None) == [Shift(ShiftKind.none)]
    for bad in ("spin:3", "rotate", "rotate:400", "noise:nan", "erase:2.5", "none:1", "blur:-1"):
        with pytest.raises(Exception, match="--shift"):
            parse_shift(bad)


def test_evaluate_names_each_shift_and_the_backends_agree(exported, tmp_path):
    rows = {}
    for backend in ("torch", "onnx"):
        args = ["evaluate", str(exported), "--backend", backend, "--json"]
        result = invoke(*args, "--shift", "rotate:30,erase:8", "--shift", "none")
        assert result.exit_code == 0, result.output
        rows[backend] = {r["shift"]: r["accuracy"] for r in json.loads(result.stdout)}
    assert list(rows["torch"]) == ["rotate:30", "erase:8", "none"]
    assert rows["torch"] == pytest.approx(rows["onnx"], abs=2e-4)
    assert rows["torch"]["rotate:30"] < rows["torch"]["none"]
    table = invoke("evaluate", str(exported), "--shift", "blur:1")
    assert table.exit_code == 0 and "blur:1" in table.stdout
    one_line_error(invoke("evaluate", str(exported), "--shift", "spin:3"), 2, "--shift")
