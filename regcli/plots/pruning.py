"""The pruning study's figure: test accuracy against the share of conv weights pruned, one panel
per way of retraining (none, one-shot, iterative), one line per penalty (none grey, L1 blue, L2
red, as in every figure) with its seeds' 95% interval; a dashed line is the dense network's."""

from matplotlib.figure import Figure

from regcli.core.config import Penalty
from regcli.plots.figures import MODE_COLOURS
from regcli.plots.rows import PruningRows

COLOURS = {
    Penalty.NONE: MODE_COLOURS["none"],
    Penalty.L1: MODE_COLOURS["l1"],
    Penalty.L2: MODE_COLOURS["l2"],
}


def penalty_label(study: PruningRows, penalty: Penalty) -> str:
    strength = study.strengths[penalty]
    return {
        Penalty.NONE: "no regularization",
        Penalty.L1: f"L1 (l1 = {strength:g})",
        Penalty.L2: f"L2 (weight decay = {strength:g})",
    }[penalty]


def pruning_study_figure(study: PruningRows, modes: list) -> Figure:
    """A panel per mode (the first: no retraining, then each of `study.retraining`'s)."""
    figure = Figure(figsize=(4.2 * len(modes), 3.8))
    panels = figure.subplots(1, len(modes), squeeze=False)[0]
    for axes, mode in zip(panels, modes, strict=True):
        for penalty in study.strengths:
            points = [study.point(penalty, mode, s) for s in study.sparsities]
            points = [p for p in points if p is not None]
            x = [100 * p.sparsity for p in points]
            y = [p.accuracy.mean for p in points]
            errors = [p.accuracy.half_width or 0.0 for p in points]
            colour = COLOURS[penalty]
            axes.errorbar(x, y, yerr=errors, color=colour, marker="o", capsize=3,
                          label=penalty_label(study, penalty))  # fmt: skip
            if mode in study.retraining:
                axes.axhline(study.dense[penalty].mean, color=colour, ls="--", lw=0.8)
        title = mode.value
        if mode in study.retraining:
            epochs, steps, _ = study.retraining[mode]
            title += f" ({steps} x {epochs} epoch{'s' if epochs > 1 else ''})"
        axes.set_title(title)
        axes.set_xlabel("conv weights pruned (%)")
        axes.set_xticks([100 * s for s in study.sparsities])
        axes.grid(True, alpha=0.3)
    retrained = panels[1:]
    if len(retrained):  # the retrained panels on one scale, to compare them by eye
        low = min(axes.get_ylim()[0] for axes in retrained)
        high = max(axes.get_ylim()[1] for axes in retrained)
        for axes in retrained:
            axes.set_ylim(low, high)
    panels[0].set_ylabel("test accuracy (%)")
    panels[0].legend(fontsize=8, loc="center left")
    figure.suptitle("Pruning with and without retraining (dashed: dense)")
    figure.tight_layout()
    return figure
