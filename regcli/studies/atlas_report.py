"""What the atlas says: its table, its JSON, how it was trained (from the run records), and the
README section "When do L1 and L2 help?", every sentence computed from the numbers.

A penalty "helps measurably" at a size when some strength's seed-paired test gain over none has
a Holm-adjusted p below ALPHA (over all the atlas's comparisons) and is positive. The strength a
user should take is the one the validation split chooses (1-SE rule); its test gain is reported
after the choice, never used for it.
"""

import math
from dataclasses import replace
from pathlib import Path

from regcli.core.tables import render
from regcli.studies.atlas import PENALTIES, Atlas, AtlasCell, Recommendation
from regcli.studies.path import Penalty
from regcli.studies.stats import ALPHA, verdict
from regcli.studies.timings import runs_text, study_runs

README_SECTION = ("atlas", "regcli report")
NAMES = {Penalty.L1: "L1", Penalty.L2: "Weight decay"}
OPTIONS = {Penalty.L1: "l1", Penalty.L2: "weight decay"}


def strength_text(penalty: Penalty, strength: float) -> str:
    return "none" if strength == 0 else f"{OPTIONS[penalty]} {strength:g}"


def helps(atlas: Atlas, size: int, penalty: Penalty) -> list[AtlasCell]:
    """The strengths with a measurable gain over none at this size, largest gain first."""
    found = [
        c
        for c in atlas.at(size, penalty)
        if c.versus_none is not None
        and c.versus_none.measurable
        and c.versus_none.estimate > 0
        and c.diverged == 0  # survivors of a diverging strength prove nothing
    ]
    return sorted(found, key=lambda c: -c.versus_none.estimate)


def none_cell(atlas: Atlas, size: int) -> AtlasCell | None:
    return next((c for c in atlas.at(size, Penalty.L1) if c.penalty is Penalty.NONE), None)


HEADERS = [
    "training images",
    "none: test acc %",
    "none: train - test",
    "L1 chosen (validation)",
    "its test gain (points)",
    "weight decay chosen",
    "its test gain (points)",
]


def chosen_cells(chosen: Recommendation | None, penalty: Penalty) -> list[str]:
    if chosen is None:
        return ["none measured on validation", "-"]
    gain = "0 (is none)" if chosen.strength == 0 else verdict(chosen.versus_none)
    return [strength_text(penalty, chosen.strength), gain]


def atlas_row(atlas: Atlas, size: int) -> list[str]:
    none = none_cell(atlas, size)
    accuracy = f"{none.test.mean:.2f} +- {none.test.std:.2f}" if none and none.test else "-"
    gap = f"{none.gap:.2f}" if none and none.gap is not None else "not measured"
    row = [f"{size:,}" + (" (the path)" if size in atlas.joined else ""), accuracy, gap]
    for penalty in PENALTIES:
        row += chosen_cells(atlas.recommended(size, penalty), penalty)
    return row


def atlas_table(atlas: Atlas, markdown: bool = False) -> str:
    return render(HEADERS, [atlas_row(atlas, s) for s in atlas.sizes], markdown=markdown)


def atlas_json(atlas: Atlas) -> dict:
    def stats(s):
        return None if s is None else {"mean": s.mean, "std": s.std, "n": s.n}

    def difference(d):
        if d is None:
            return None
        half = None if math.isnan(d.half_width) else d.half_width
        return {
            "estimate": d.estimate,
            "half_width": half,
            "method": d.method,
            "p": d.p,
            "adjusted_p": d.adjusted_p,
            "measurable": d.measurable,
        }

    cells = [
        {
            "train_images": c.size,
            "cell": c.cell,
            "path": c.penalty.value,
            "strength": c.strength,
            "seeds": c.seeds,
            "diverged": c.diverged,
            "test_accuracy": stats(c.test),
            "val_accuracy": stats(c.val),
            "clean_train_accuracy": stats(c.train),
            "gap": c.gap,
            "versus_none": difference(c.versus_none),
        }
        for c in atlas.cells
    ]
    chosen = [
        {
            "train_images": r.size,
            "path": r.penalty.value,
            "strength": r.strength,
            "candidates": r.candidates,
            "test_gain": difference(r.versus_none),
        }
        for r in atlas.recommendations
    ]
    return {
        "cells": cells,
        "recommended": chosen,
        "joined": {str(k): v for k, v in atlas.joined.items()},
    }


def runs_sentence(atlas: Atlas, runs: dict | None) -> list[str]:
    s = atlas.settings
    sizes = [size for size in atlas.sizes if size not in atlas.joined]

    def passes(size: int) -> str:
        count = replace(s, train_size=size).passes_per_epoch
        return f"{size:,} images, {s.epochs} epochs of {count} pass{'es' if count > 1 else ''}"

    length = (
        f"Every size trains at least {s.min_steps:,} optimizer steps of {s.batch_size} images "
        f"(an epoch is the fewest whole passes that reach it: {'; '.join(map(passes, sizes))})"
        if s.min_steps
        else f"Every size trains {s.epochs} epochs of one pass (no --min-steps)"
    )
    held = (
        f"{s.val_size:,} training images per seed are held out for validation, class-balanced "
        "and disjoint from the seed's training subset, which is the same in every cell"
        if s.val_size
        else "no validation split is held out, so no strength is chosen"
    )
    said = [f"{length}; {held}."]
    if runs:
        said.append(runs_text(runs, "The atlas's {models} models"))
    return said


def method_sentence(atlas: Atlas) -> list[str]:
    compared = [c.versus_none for c in atlas.cells if c.versus_none is not None]
    if not compared:
        return []
    methods = sorted({d.method for d in compared})
    how = (
        "seed by seed (a paired t interval)"
        if methods == ["paired"]
        else (f"by {' and '.join(methods)} t intervals")
    )
    return [
        f"Each cell's final test accuracy is compared with none's at the same size {how}; the "
        f"{len(compared)} comparisons of the atlas are Holm-adjusted together, and a gain is "
        f"measurable when its adjusted p is below {ALPHA:g}."
    ]


def sizes_text(sizes: list[int]) -> str:
    shown = [f"{s:,}" for s in sizes]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def helps_sentences(atlas: Atlas, penalty: Penalty) -> list[str]:
    """At which sizes the penalty helps measurably, and by how much at most."""
    name = NAMES[penalty]
    sizes = [s for s in atlas.sizes if any(c.penalty is penalty for c in atlas.at(s, penalty))]
    helped = {s: helps(atlas, s, penalty) for s in sizes}
    yes = [s for s in sizes if helped[s]]
    if not sizes:
        return []
    if not yes:
        return [
            f"{name} helps measurably at no size ({sizes_text(sizes)} images): no strength's "
            "gain over none passes the Holm-adjusted test."
        ]
    best_size = max(yes, key=lambda s: helped[s][0].versus_none.estimate)
    best = helped[best_size][0]
    rest = [s for s in sizes if s not in yes]
    tail = f"; at {sizes_text(rest)} images no strength does" if rest else ""
    return [
        f"{name} helps measurably at {sizes_text(yes)} training images, the most at "
        f"{best_size:,} ({strength_text(penalty, best.strength)}: "
        f"{best.versus_none.verdict()}){tail}."
    ]


def chosen_sentences(atlas: Atlas, penalty: Penalty) -> list[str]:
    chosen = [r for r in atlas.recommendations if r.penalty is penalty]
    if not chosen:
        return []
    parts = []
    for r in chosen:
        gain = "" if r.strength == 0 else f" (test: {verdict(r.versus_none)})"
        parts.append(f"{r.size:,} images: {strength_text(penalty, r.strength)}{gain}")
    said = [
        f"Chosen on the validation split by the one-standard-error rule, "
        f"{NAMES[penalty].lower()}'s strength is, per size: {'; '.join(parts)}."
    ]
    edge = [
        r.size
        for r in chosen
        if r.strength > 0 and r.strength == max(c.strength for c in atlas.at(r.size, penalty))
    ]
    if edge:
        said.append(
            f"At {sizes_text(edge)} images that is the strongest {OPTIONS[penalty]} in the grid, "
            "so a stronger one might do better still."
        )
    return said


def gap_sentences(atlas: Atlas) -> list[str]:
    gaps = [(s, none_cell(atlas, s)) for s in atlas.sizes]
    gaps = [(s, c.gap) for s, c in gaps if c is not None and c.gap is not None]
    if not gaps:
        return []
    shown = ", ".join(f"{g:+.2f} points at {s:,} images" for s, g in gaps)
    verdict_text = (
        "the unregularized network fits its training images better than the test set at every size"
        if all(g > 0 for _, g in gaps)
        else "the unregularized network does not fit its training images better than the test "
        "set at every size"
    )
    return [
        f"Clean training accuracy (eval mode, no rotation, seed mean) minus test accuracy: "
        f"{shown}: {verdict_text}."
    ]


def joined_sentences(atlas: Atlas) -> list[str]:
    said = []
    for size, changes in atlas.joined.items():
        differs = (
            f"its settings differ from the atlas's in {changes.replace('(asked', '(atlas')}"
            if changes
            else "its settings are the atlas's"
        )
        chosen = any(r.size == size for r in atlas.recommendations)
        tail = (
            ""
            if chosen
            else "; its models hold no validation accuracy, so no strength is chosen there"
        )
        said.append(f"The {size:,}-image line is a path trained on every image: {differs}{tail}.")
    return said


def findings(atlas: Atlas, runs: dict | None) -> list[str]:
    said = runs_sentence(atlas, runs) + method_sentence(atlas) + gap_sentences(atlas)
    for penalty in PENALTIES:
        said += helps_sentences(atlas, penalty) + chosen_sentences(atlas, penalty)
    return said + joined_sentences(atlas)


def atlas_section(atlas: Atlas, figures: list[str]) -> str:
    """The README section: the findings, the table per size, the figures."""
    sentences = findings(atlas, study_runs(atlas.folders))
    images = "\n".join(f"![{Path(f).stem}]({f})" for f in figures)
    table = atlas_table(atlas, markdown=True)
    return (
        "\n".join(f"- {s}" for s in sentences)
        + "\n\n"
        + table
        + ("\n\n" + images if images else "")
    )


def atlas_figures(atlas: Atlas, name: str, images_dir: Path) -> list[Path]:
    """<name>_gain.png and <name>_gap.png."""
    from regcli.plots.atlas import gain_figure, gap_figure
    from regcli.plots.figures import save_figure
    from regcli.store.layout import figure_path

    seeds = max(c.seeds for c in atlas.cells)
    title = f"Atlas ({name}: {seeds} seeds per cell)"
    written = []
    for kind, draw in (("gain", gain_figure), ("gap", gap_figure)):
        target = figure_path(images_dir, name, kind)
        save_figure(draw(atlas, title), target)
        written.append(target)
    return written
