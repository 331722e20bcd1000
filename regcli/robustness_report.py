"""The README section "Under shift": the path's accuracy on the shifted test sets (shifts.py),
as a table, a figure and sentences computed from the numbers: per shift and penalty, the largest
measurable gain and loss against none (seed-paired, Holm over every shifted comparison)."""

from pathlib import Path

from regcli.robustness import ROBUSTNESS_SHIFTS
from regcli.stats import ALPHA, p_text
from regcli.strength_path import PathCell, Penalty
from regcli.tables import render

README_SECTION = ("robustness", "regcli report")
NAMES = {Penalty.L1: ("L1", "l1"), Penalty.L2: ("weight decay", "weight decay")}


def shift_text(cell: PathCell, shift: str) -> str:
    found = cell.shifted.get(shift)
    if found is None:
        return "-"
    text = f"{found.accuracy.mean:.2f}"
    d = found.versus_none
    if d is not None:
        text += f" ({d.estimate:+.2f}{'*' if d.measurable else ''})"
    return text


def robustness_table(cells: list[PathCell], markdown: bool = False) -> str:
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


def extremes(along: list[PathCell], shift: str) -> tuple:
    """The largest measurable gain and the largest measurable loss under a shift (or None)."""
    measured = [c for c in along if shift in c.shifted and c.shifted[shift].versus_none is not None]
    gains = [c for c in measured if c.shifted[shift].versus_none.measurable]
    best = max(gains, key=lambda c: c.shifted[shift].versus_none.estimate, default=None)
    worst = min(gains, key=lambda c: c.shifted[shift].versus_none.estimate, default=None)
    best = best if best and best.shifted[shift].versus_none.estimate > 0 else None
    worst = worst if worst and worst.shifted[shift].versus_none.estimate < 0 else None
    return best, worst


def largest_text(along: list[PathCell], shift: str, option: str) -> str:
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


def shift_sentences(cells: list[PathCell], shift: str) -> list[str]:
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


def robustness_findings(cells: list[PathCell]) -> list[str]:
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


def robustness_section(cells: list[PathCell], figure: str | None) -> str:
    sentences = robustness_findings(cells)
    image = f"\n\n![{Path(figure).stem}]({figure})" if figure else ""
    table = robustness_table(cells, markdown=True)
    return "\n".join(f"- {s}" for s in sentences) + "\n\n" + table + image
