"""Robustness along the path: each seed's accuracy on the shifted test sets (shifts.py), cached
beside its model like the pruned accuracies, and per cell the seed statistics and the
seed-paired difference from none under each shift (Holm over the study's comparisons).
"""

from dataclasses import dataclass
from pathlib import Path

from regcli.backends import open_predictor
from regcli.data import Split
from regcli.layout import SHIFTS_CACHE_NAME
from regcli.measure_cache import cached_numbers
from regcli.scoring import score
from regcli.shifts import parse_shift
from regcli.stats import Difference, SeedStats, holm_adjusted

ROBUSTNESS_SHIFTS = ("rotate:30", "noise:0.3", "blur:1", "erase:8")  # the path's shifted sets
SHIFT_CODE = 1  # bump when a shift's recipe changes: every cache is measured again


def shifted_tests(test: Split, shifts=ROBUSTNESS_SHIFTS) -> dict[str, Split]:
    """Each shifted copy of the test set, made once and shared by every model."""
    found = [parse_shift(text) for text in shifts]
    return {s.name: Split(s.apply(test.images), test.labels) for s in found}


def shifted_accuracies(
    model_dir: Path, sha256: str, shifted: dict[str, Split], backend: str
) -> dict[str, float]:
    """Accuracy (%) on each shifted test set, from the cache when it is for this very model.pt,
    backend, test-set size and shift recipe; measured (and the cache refreshed) otherwise."""
    size = len(next(iter(shifted.values())))
    key = {"source_sha256": sha256, "backend": backend, "test_images": size, "code": SHIFT_CODE}
    predictor = []

    def measure(name: str) -> float:
        if not predictor:
            predictor.append(open_predictor(model_dir, backend=backend))
        return 100 * score(predictor[0], shifted[name]).accuracy

    return cached_numbers(Path(model_dir) / SHIFTS_CACHE_NAME, key, list(shifted), measure)


@dataclass(frozen=True)
class ShiftedCell:
    """One cell's accuracy under one shift, and its difference from none's under the same."""

    shift: str
    accuracy: SeedStats
    versus_none: Difference | None


def compare_shifted(cells: list, baseline: dict[str, SeedStats] | None) -> list[dict]:
    """Per cell, {shift: ShiftedCell} with its paired difference from none's (cells hold
    `shifted`: {shift: SeedStats}); every difference of the study Holm-adjusted together."""
    rows, flat = [], []
    for cell in cells:
        row = {}
        for shift, stats in (cell.shifted or {}).items():
            compared = baseline is not None and shift in baseline and cell.strength > 0
            difference = stats.versus(baseline[shift]) if compared else None
            row[shift] = ShiftedCell(shift, stats, difference)
            flat.append((row, shift))
        rows.append(row)
    adjusted = holm_adjusted([row[shift].versus_none for row, shift in flat])
    for (row, shift), difference in zip(flat, adjusted, strict=True):
        row[shift] = ShiftedCell(shift, row[shift].accuracy, difference)
    return rows
