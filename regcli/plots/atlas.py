"""The atlas's figures: accuracy gain over none against strength, and the train-test gap against
strength, one line per training-set size, one panel per penalty (L1 blue, L2 red, as in every
figure: a size's line is a shade of its penalty's colour, darker for more images). The strength
the validation split recommends is a star on its line (its legend entry says it, none too).
"""

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from regcli.core.config import Penalty
from regcli.plots.figures import MODE_COLOURS
from regcli.plots.rows import AtlasRows

SHADES = {Penalty.L1: "Blues", Penalty.L2: "Reds"}  # the colour maps of PATH_COLOURS' hues
TITLES = {Penalty.L1: "L1 (--l1)", Penalty.L2: "L2 (--weight-decay)"}


def shades(penalty: Penalty, sizes: list[int]) -> dict[int, tuple]:
    """A shade per size, light for the fewest images, dark for the most."""
    cmap = colormaps[SHADES[penalty]]
    steps = np.linspace(0.45, 0.95, len(sizes)) if len(sizes) > 1 else [0.8]
    return {size: cmap(step) for size, step in zip(sizes, steps, strict=True)}


def size_label(atlas: AtlasRows, size: int, penalty: Penalty) -> str:
    chosen = atlas.recommended(size, penalty)
    label = f"{size:,} images"
    if chosen is not None:
        label += f" (chosen: {'none' if chosen.strength == 0 else f'{chosen.strength:g}'})"
    return label


def gain_panel(axes, atlas: AtlasRows, penalty: Penalty) -> None:
    palette = shades(penalty, atlas.sizes)
    axes.axhline(0, color=MODE_COLOURS["none"], lw=1, label="no regularization")
    for size in atlas.sizes:
        along = [c for c in atlas.at(size, penalty) if c.versus_none is not None]
        if not along:
            continue
        x = [c.strength for c in along]
        y = [c.versus_none.estimate for c in along]
        errors = [
            0 if np.isnan(c.versus_none.half_width) else c.versus_none.half_width for c in along
        ]
        style = {"color": palette[size], "marker": "o", "markersize": 3, "capsize": 2}
        axes.errorbar(x, y, yerr=errors, label=size_label(atlas, size, penalty), **style)
        chosen = atlas.recommended(size, penalty)
        if chosen is not None and chosen.strength > 0:
            at = x.index(chosen.strength)
            axes.plot([x[at]], [y[at]], marker="*", markersize=13, color=palette[size], mec="black")
    axes.set_xscale("log")
    axes.set_title(TITLES[penalty])
    axes.set_xlabel("strength")
    axes.grid(True, alpha=0.3)


def gap_panel(axes, atlas: AtlasRows, penalty: Penalty) -> None:
    palette = shades(penalty, atlas.sizes)
    for size in atlas.sizes:
        along = [c for c in atlas.at(size, penalty) if c.gap is not None]
        regularized = [c for c in along if c.strength > 0]
        none = next((c for c in along if c.strength == 0), None)
        if not regularized:
            continue
        x = [c.strength for c in regularized]
        axes.plot(
            x,
            [c.gap for c in regularized],
            marker="o",
            markersize=3,
            color=palette[size],
            label=size_label(atlas, size, penalty),
        )
        if none is not None:
            axes.axhline(none.gap, color=palette[size], lw=1, linestyle=":")
        chosen = atlas.recommended(size, penalty)
        if chosen is not None and chosen.strength in x:
            at = x.index(chosen.strength)
            axes.plot(
                [x[at]],
                [regularized[at].gap],
                marker="*",
                markersize=13,
                color=palette[size],
                mec="black",
            )
    axes.set_xscale("log")
    axes.set_title(TITLES[penalty])
    axes.set_xlabel("strength")
    axes.grid(True, alpha=0.3)


def panels_figure(atlas: AtlasRows, draw, ylabel: str, legend: str, title: str) -> Figure:
    """One panel per penalty, drawn by `draw(axes, atlas, penalty)`."""
    figure = Figure(figsize=(12, 4.6))
    panels = figure.subplots(1, 2, sharey=True)
    for axes, penalty in zip(panels, (Penalty.L1, Penalty.L2), strict=True):
        draw(axes, atlas, penalty)
        axes.legend(fontsize=7, loc=legend)
    panels[0].set_ylabel(ylabel)
    figure.suptitle(title)
    return figure


def gain_figure(atlas: AtlasRows, title: str) -> Figure:
    """Test accuracy gain over none (seed-paired 95% intervals) against strength."""
    heading = f"{title}: gain over none; star = strength chosen on validation (1-SE)"
    ylabel = "test accuracy gain over none (points)"
    return panels_figure(atlas, gain_panel, ylabel, "lower left", heading)


def gap_figure(atlas: AtlasRows, title: str) -> Figure:
    """Clean training accuracy minus test accuracy against strength (dotted: none's gap)."""
    heading = f"{title}: train-test gap (dotted: none at that size)"
    return panels_figure(atlas, gap_panel, "train - test accuracy (points)", "upper right", heading)
