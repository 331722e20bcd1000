"""Every figure, drawn through matplotlib's object API (no pyplot state), so they work headless.

Functions here take the rows and series that the studies compute (their shapes: plots/rows.py;
the dicts of studies/weights.py) and return a Figure (the studies never draw);
`save_figure` writes it atomically. Colours agree across figures: one colour per mode (none,
l1, l2, l1_l2) wherever the four variants appear, a single run in its seed group's colour, and
strengths along one colour scale in the path figures.
"""

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from regcli.core.config import Penalty
from regcli.core.files import write_bytes
from regcli.plots.rows import PathRow, SeriesRow, Stats

MODE_COLOURS = {"none": "#555555", "l1": "#1f77b4", "l2": "#d62728", "l1_l2": "#9467bd"}
PATH_COLOURS = {"l1": MODE_COLOURS["l1"], "l2": MODE_COLOURS["l2"]}  # the L1 and L2 paths
OTHER_COLOURS = ["#2ca02c", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
STRENGTH_MAP = "viridis"  # strengths along one colour scale, weakest dark


def save_figure(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())


def colours(groups: list[str]) -> dict[str, str]:
    """A colour per group name: the mode's colour for the four variants, others in turn."""
    found, spare = {}, iter(OTHER_COLOURS * (1 + len(groups) // len(OTHER_COLOURS)))
    for group in groups:
        if group not in found:
            found[group] = MODE_COLOURS.get(group) or next(spare)
    return found


def history_figure(name: str, history: list[dict]) -> Figure:
    """Train and test accuracy (left) and loss (right) per epoch: the 'Model Epoch History'."""
    epochs = [r["epoch"] for r in history]
    figure = Figure(figsize=(11, 4))
    accuracy, loss = figure.subplots(1, 2)
    for split in ("train", "test"):
        accuracy.plot(
            epochs,
            [100 * r[f"{split}_accuracy"] for r in history],
            marker="o",
            markersize=3,
            label=split,
        )
        loss.plot(
            epochs, [r[f"{split}_loss"] for r in history], marker="o", markersize=3, label=split
        )
    accuracy.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    loss.set(title="Loss (cross-entropy, without penalty)", xlabel="epoch", ylabel="loss")
    for axes in (accuracy, loss):
        axes.grid(alpha=0.3)
        axes.legend()
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"{name}: model epoch history")
    return figure


def misclassified_figure(images, rows: list[dict], title: str) -> Figure:
    """A near-square grid of digits, each titled with true label, prediction and confidence."""
    count = max(len(rows), 1)
    columns = math.ceil(math.sqrt(count))
    grid_rows = math.ceil(count / columns)
    figure = Figure(figsize=(1.6 * columns, 1.75 * grid_rows + 0.4))
    axes = figure.subplots(grid_rows, columns, squeeze=False).flatten()
    for ax in axes:
        ax.axis("off")
    for ax, image, row in zip(axes, images, rows, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(
            f"#{row['index']}: true {row['true']}, pred {row['predicted']}\n"
            f"{row['confidence']:.0%} sure",
            fontsize=8,
        )
    figure.suptitle(title)
    return figure


def compare_figure(series: list[SeriesRow]) -> Figure:
    """Test accuracy and loss per epoch. Each series (rows.SeriesRow): label, group, epochs, and
    for accuracy and loss a mean line with low/high (a seed group's range, shaded); a single run
    is dashed in its group's colour, a seed group's mean solid."""
    figure = Figure(figsize=(12, 4.5))
    accuracy, loss = figure.subplots(1, 2)
    palette = colours([s.group for s in series])
    for s in series:
        style = {"color": palette[s.group], "linestyle": "-" if s.seeds > 1 else "--"}
        for axes, band in ((accuracy, s.accuracy), (loss, s.loss)):
            mean, low, high = (np.asarray(part) for part in (band.mean, band.low, band.high))
            axes.plot(s.epochs, mean, marker="o", markersize=2.5, label=s.label, **style)
            if s.seeds > 1:
                axes.fill_between(s.epochs, low, high, alpha=0.2, color=style["color"], lw=0)
    accuracy.set(title="Test (validation) accuracy", xlabel="epoch", ylabel="accuracy (%)")
    loss.set(title="Test (validation) loss", xlabel="epoch", ylabel="cross-entropy")
    finals = [s.accuracy.mean[-1] for s in series]
    top = min(max(finals) + 0.3, 100.05)
    bottom = max(0.0, min(finals) - 1.0)  # a model far below the rest still shows
    accuracy.set_ylim(bottom, max(top, bottom + 0.5))
    loss.set_yscale("log")
    for axes in (accuracy, loss):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss.legend(loc="upper right", fontsize=8, ncols=2 if len(series) > 5 else 1)
    figure.suptitle("Model comparison")
    return figure


def weights_figure(stats: list[dict], near_zero: float = 1e-3) -> Figure:
    """Left: the share of conv weights with |w| below each value (cumulative, both axes log),
    where L1's extra near-zero weights show at a glance. Right: histograms of the values. Each
    stat: model, group, values (numpy)."""
    figure = Figure(figsize=(13, 4.5), layout="constrained")
    cumulative, histogram = figure.subplots(1, 2)
    palette = colours([s["group"] for s in stats])
    magnitudes = [np.sort(np.abs(s["values"])) for s in stats]
    smallest = max(min(float(m[m > 0].min()) for m in magnitudes if (m > 0).any()), 1e-8)
    largest = max(float(m[-1]) for m in magnitudes)
    for s, m in zip(stats, magnitudes, strict=True):
        style = {"color": palette[s["group"]], "linestyle": "--" if s.get("single") else "-"}
        share = 100 * np.arange(1, len(m) + 1) / len(m)
        cumulative.step(np.maximum(m, smallest), share, where="post", label=s["model"], **style)
    cumulative.set_xscale("log")
    cumulative.set_yscale("log")
    cumulative.set_xlim(max(smallest, 1e-6), largest)
    cumulative.set_ylim(0.01, 100)
    cumulative.axvline(near_zero, color="black", linestyle=":", linewidth=1)
    cumulative.text(near_zero, 0.012, f" |w| < {near_zero:g}: near zero", fontsize=8)
    cumulative.set(
        title="Share of conv weights below |w| (cumulative)",
        xlabel="|w| (log scale)",
        ylabel="weights with a smaller magnitude (%, log scale)",
    )
    bins = np.linspace(-largest, largest, 121)
    for s in stats:
        histogram.hist(
            s["values"],
            bins=bins,
            histtype="step",
            linewidth=1.2,
            color=palette[s["group"]],
            label=s["model"],
        )
    histogram.set_yscale("log")
    histogram.set(title="Conv weight values", xlabel="weight", ylabel="count (log scale)")
    for axes in (cumulative, histogram):
        axes.grid(alpha=0.3)
    cumulative.legend(fontsize=8, ncols=2 if len(stats) > 5 else 1)
    return figure


def pruning_figure(curves: list[dict]) -> Figure:
    """Accuracy against the share of conv weights zeroed; each curve: model, group, points."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    palette = colours([c["group"] for c in curves])
    for curve in curves:
        axes.plot(
            [100 * p["sparsity"] for p in curve["points"]],
            [100 * p["accuracy"] for p in curve["points"]],
            marker="o",
            color=palette[curve["group"]],
            label=curve["model"],
        )
    axes.set(
        title="Magnitude pruning without retraining",
        xlabel="weights set to zero (%)",
        ylabel="test accuracy (%)",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncols=2 if len(curves) > 5 else 1)
    return figure


# --- regularization paths --------------------------------------------------------------------

ALONG = (Penalty.L1, Penalty.L2)  # the two paths drawn against strength
PATH_NAMES = {"l1": "L1", "l2": "L2 (weight decay)"}
Quantity = Callable[[PathRow], Stats | None]


def by_strength(cells: list[PathRow], path: str) -> list[PathRow]:
    return sorted((c for c in cells if c.path == path), key=lambda c: c.strength)


def _path_panel(axes, cells: list[PathRow], quantity: Quantity, baseline: PathRow | None):
    """One quantity against strength: the L1 and L2 paths as lines with 95% intervals, the
    unregularized mean and interval as a band, diverged cells as crosses on the axis."""
    if baseline is not None and quantity(baseline) is not None:
        centre, half = quantity(baseline).mean, quantity(baseline).half_width or 0.0
        axes.axhspan(centre - half, centre + half, color=MODE_COLOURS["none"], alpha=0.15, lw=0)
        axes.axhline(centre, color=MODE_COLOURS["none"], lw=1, label="no regularization")
    for path in ALONG:
        points = by_strength(cells, path)
        good = [(c.strength, quantity(c)) for c in points if quantity(c) is not None]
        if good:
            axes.errorbar(
                [strength for strength, _ in good],
                [stats.mean for _, stats in good],
                yerr=[stats.half_width or 0.0 for _, stats in good],
                color=PATH_COLOURS[path],
                marker="o",
                markersize=4,
                capsize=3,
                label=f"{PATH_NAMES[path]} path",
            )
        lost = [c.strength for c in points if quantity(c) is None and c.diverged]
        if lost:
            axes.plot(
                lost,
                [0] * len(lost),
                "x",
                ms=9,
                mew=2,
                color=PATH_COLOURS[path],
                transform=axes.get_xaxis_transform(),
                clip_on=False,
                label=f"{path} diverged",
            )
    axes.set_xscale("log")
    axes.set_xlabel("strength (log scale; l1 or weight decay)")
    axes.grid(alpha=0.3)


def _pruned_panel(axes, cells: list[PathRow], baseline: PathRow | None) -> None:
    """Accuracy after pruning against strength, a line style per share zeroed."""
    levels = sorted({s for c in cells for s in c.pruned})
    along = [c for c in cells if c.path in ALONG]
    styles = ["-", "--", ":", "-."]
    for level, style in zip(levels, styles * 3, strict=False):
        for path in ALONG:
            points = [c for c in by_strength(along, path) if c.pruned.get(level) is not None]
            if points:
                axes.plot(
                    [c.strength for c in points],
                    [c.pruned[level] for c in points],
                    linestyle=style,
                    marker="o",
                    markersize=3,
                    color=PATH_COLOURS[path],
                    label=f"{path}, {100 * level:g}% zeroed",
                )
        if baseline and baseline.pruned.get(level) is not None:
            axes.axhline(
                baseline.pruned[level],
                color=MODE_COLOURS["none"],
                linestyle=style,
                lw=1,
                label=f"none, {100 * level:g}% zeroed",
            )
    axes.set_xscale("log")
    axes.set(
        title="Accuracy after magnitude pruning (no retraining)",
        xlabel="strength (log scale; l1 or weight decay)",
        ylabel="accuracy (%)",
    )
    axes.grid(alpha=0.3)


def path_figure(cells: list[PathRow], title: str) -> Figure:
    """The regularization path: accuracy, near-zero share, L1 norm and pruned accuracy against
    strength. Each cell (rows.PathRow): path, strength, diverged, and per quantity its
    seed statistics (mean, and the half width of its 95% interval)."""
    baseline = next((c for c in cells if c.path == Penalty.NONE), None)
    along = [c for c in cells if c.path in ALONG]
    figure = Figure(figsize=(13, 9), layout="constrained")
    (accuracy, sparse), (norm, pruned) = figure.subplots(2, 2)
    _path_panel(accuracy, along, lambda c: c.accuracy, baseline)
    accuracy.set(title="Final test accuracy (seed mean, 95% interval)", ylabel="accuracy (%)")
    _path_panel(sparse, along, lambda c: c.near_zero_share, baseline)
    sparse.set(title="Near-zero conv weights (|w| < 1e-3)", ylabel="share of weights (%)")
    _path_panel(norm, along, lambda c: c.l1_norm, baseline)
    norm.set(title="L1 norm of the conv weights", ylabel="sum |w|")
    _pruned_panel(pruned, cells, baseline)
    for axes in (accuracy, sparse, norm, pruned):
        handles, labels = axes.get_legend_handles_labels()
        if handles:
            axes.legend(fontsize=7)
    figure.suptitle(title)
    return figure


def strength_pruning_figure(cells: list[PathRow], title: str) -> Figure:
    """Accuracy against the share of weights zeroed, one line per strength, coloured along one
    scale of strength; a panel per path."""
    along = [c for c in cells if c.path in ALONG and c.pruned]
    baseline = next((c for c in cells if c.path == Penalty.NONE and c.pruned), None)
    strengths = [c.strength for c in along]
    figure = Figure(figsize=(13, 4.8), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    if not strengths:
        return figure
    norm = LogNorm(min(strengths), max(strengths))
    cmap = colormaps[STRENGTH_MAP]
    for axes, path in zip(panels, ALONG, strict=True):
        if baseline:
            style = {"color": MODE_COLOURS["none"], "lw": 2, "linestyle": "--"}
            pruned_line(axes, baseline.pruned, **style, label="none")
        for cell in by_strength(along, path):
            style = {"marker": "o", "markersize": 3, "color": cmap(norm(cell.strength))}
            pruned_line(axes, cell.pruned, **style, label=f"{cell.strength:g}")
        axes.set(title=f"{PATH_NAMES[path]} path", xlabel="conv weights set to zero (%)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, title="strength")
    panels[0].set_ylabel("test accuracy (%)")
    scale = figure.colorbar(ScalarMappable(norm, cmap), ax=list(panels))
    scale.set_label("strength (l1 or weight decay)")
    figure.suptitle(title)
    return figure


def pruned_line(axes, pruned: dict[float, float], **style) -> None:
    """Accuracy (%) against the share of weights zeroed (%), one point per share."""
    levels = sorted(pruned)
    axes.plot([100 * s for s in levels], [pruned[s] for s in levels], **style)


def robustness_figure(cells: list[PathRow], shifts: list[str], title: str) -> Figure:
    """Accuracy on each shifted test set against strength (one panel per shift), the L1 and
    L2 paths with seed intervals, none as a band, as in the path figure."""
    baseline = next((c for c in cells if c.path == Penalty.NONE), None)
    along = [c for c in cells if c.path in ALONG]
    figure = Figure(figsize=(13, 9), layout="constrained")
    panels = figure.subplots(2, math.ceil(len(shifts) / 2), squeeze=False).flatten()
    for axes, shift in zip(panels, shifts, strict=False):

        def under(c, shift=shift):
            found = c.shifted.get(shift)
            return found.accuracy if found is not None else None

        _path_panel(axes, along, under, baseline)
        axes.set(title=f"Accuracy under {shift} (seed mean, 95% interval)", ylabel="accuracy (%)")
        axes.legend(fontsize=7)
    figure.suptitle(title)
    return figure
