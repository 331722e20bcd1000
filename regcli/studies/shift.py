"""The path under shift: each seed's accuracy on the shifted test sets (data/shifts.py), cached
beside its model like the pruned accuracies, and per cell the seed statistics and the
seed-paired difference from none under each shift (Holm over the study's comparisons).

Its report is the docs section "Under shift": a table, a figure and sentences computed from the
numbers: per shift and penalty, the largest measurable gain and loss against none (seed-paired,
Holm over every shifted comparison). It reads the path's cells through `PathRow` (what it needs
of studies/path.py's PathCell), so that the path can import it and not the other way round.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from regcli.core.config import Penalty
from regcli.core.tables import render
from regcli.data.mnist import Split
from regcli.data.shifts import parse_shift
from regcli.inference.backends import open_predictor
from regcli.inference.scoring import score
from regcli.store.layout import SHIFTS_CACHE_NAME
from regcli.store.measure_cache import cached_numbers
from regcli.studies.stats import ALPHA, Difference, SeedStats, holm_adjusted, p_text

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


class PathRow(Protocol):
    """A cell of the path as the shift report reads it (studies.path.PathCell is one)."""

    cell: str
    path: Penalty
    strength: float
    accuracy: SeedStats | None
    shifted: dict[str, ShiftedCell]


README_SECTION = ("robustness", "regcli report")
NAMES = {Penalty.L1: ("L1", "l1"), Penalty.L2: ("weight decay", "weight decay")}


def shift_text(cell: PathRow, shift: str) -> str:
    found = cell.shifted.get(shift)
    if found is None:
        return "-"
    text = f"{found.accuracy.mean:.2f}"
    d = found.versus_none
    if d is not None:
        text += f" ({d.estimate:+.2f}{'*' if d.measurable else ''})"
    return text


def robustness_table(cells: list[PathRow], markdown: bool = False) -> str:
    shifts = [s for s in ROBUSTNESS_SHIFTS if any(s in c.shifted for c in cells)]
    headers = ["cell", "clean test acc %", *(f"{s} acc % (vs none)" for s in shifts)]
    rows = [
        [
            c.cell,
            "-" if c.accuracy is None else f"{c.accuracy.mean:.2f}",
            *(shift_text(c, s) for s in shifts),
        ]
        for c in cells
        if c.accuracy is not None
    ]
    return render(headers, rows, markdown=markdown)


def extremes(along: list[PathRow], shift: str) -> tuple:
    """The largest measurable gain and the largest measurable loss under a shift (or None)."""
    measured = [c for c in along if shift in c.shifted and c.shifted[shift].versus_none is not None]
    gains = [c for c in measured if c.shifted[shift].versus_none.measurable]
    best = max(gains, key=lambda c: c.shifted[shift].versus_none.estimate, default=None)
    worst = min(gains, key=lambda c: c.shifted[shift].versus_none.estimate, default=None)
    best = best if best and best.shifted[shift].versus_none.estimate > 0 else None
    worst = worst if worst and worst.shifted[shift].versus_none.estimate < 0 else None
    return best, worst


def largest_text(along: list[PathRow], shift: str, option: str) -> str:
    """Nothing measurable: the largest difference anyway, with its interval and Holm p."""
    found = [c for c in along if shift in c.shifted and c.shifted[shift].versus_none]
    if not found:
        return "has no cell to compare"
    cell = max(found, key=lambda c: abs(c.shifted[shift].versus_none.estimate))
    d = cell.shifted[shift].versus_none
    return (
        f"differs measurably nowhere (largest: {d.estimate:+.2f} +- {d.half_width:.2f} points "
        f"at {option} {cell.strength:g}, Holm p {p_text(d.decisive_p)})"
    )


def shift_sentences(cells: list[PathRow], shift: str) -> list[str]:
    base = next((c for c in cells if c.path is Penalty.NONE and shift in c.shifted), None)
    if base is None:
        return []
    parts = []
    for penalty, (name, option) in NAMES.items():
        along = sorted((c for c in cells if c.path is penalty), key=lambda c: c.strength)
        best, worst = extremes(along, shift)
        said = []
        for cell, how in ((best, "gains"), (worst, "loses")):
            if cell is not None:
                d = cell.shifted[shift].versus_none
                said.append(
                    f"{how} up to {abs(d.estimate):.2f} +- {d.half_width:.2f} points "
                    f"({option} {cell.strength:g})"
                )
        if not said:
            said.append(largest_text(along, shift, option))
        parts.append(f"{name} {' and '.join(said)}")
    accuracy = base.shifted[shift].accuracy.mean
    return [f"Under {shift} (none: {accuracy:.2f}%): {'; '.join(parts)}."]


def robustness_findings(cells: list[PathRow]) -> list[str]:
    compared = [
        r.versus_none for c in cells for r in c.shifted.values() if r.versus_none is not None
    ]
    if not compared:
        return ["The path has no shifted accuracies to compare."]
    said = [
        f"Each cell's accuracy under each shift is compared with none's under the same shift, "
        f"seed by seed ({', '.join(sorted({d.method for d in compared}))}); the "
        f"{len(compared)} comparisons are Holm-adjusted together, and * marks a difference "
        f"whose adjusted p is below {ALPHA:g}."
    ]
    for shift in ROBUSTNESS_SHIFTS:
        said += shift_sentences(cells, shift)
    return said


def robustness_section(cells: list[PathRow], figure: str | None) -> str:
    sentences = robustness_findings(cells)
    image = f"\n\n![{Path(figure).stem}]({figure})" if figure else ""
    table = robustness_table(cells, markdown=True)
    return "\n".join(f"- {s}" for s in sentences) + "\n\n" + table + image
