"""The pruning study in words and tables: the README section "Pruning, then retraining", its
table, and findings sentences generated from the study's numbers (pruning_study.py), which say
no more than the Holm-adjusted paired intervals do."""

from pathlib import Path

from regcli.core.tables import render
from regcli.plots.figures import save_figure
from regcli.plots.pruning import penalty_label, pruning_study_figure
from regcli.store.layout import figure_path
from regcli.studies.path import Penalty
from regcli.studies.pruning import Mode, PruningStudy
from regcli.studies.stats import Difference, p_text
from regcli.studies.timings import runs_text, study_runs

README_SECTION = ("pruning-study", "regcli report")
SCHEDULES = {"onecycle": "one-cycle", "step": "step"}  # config.Schedule, as a sentence says it


def percent(share: float) -> str:
    return f"{100 * share:g}%"


def levels_text(levels: list[float]) -> str:
    shown = [percent(s) for s in levels]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def interval(d: Difference) -> str:
    if d.decisive_p is None:  # fewer than two seeds on a side
        return d.verdict()
    return (
        f"{d.estimate:+.2f} +- {d.half_width:.2f} points; {d.method}, Holm p {p_text(d.decisive_p)}"
    )


def cell(study: PruningStudy, penalty: Penalty, mode: Mode, level: float) -> str:
    point = study.point(penalty, mode, level)
    if point is None:
        return "-"
    half = point.accuracy.half_width
    return f"{point.accuracy.mean:.2f}" + (f" +- {half:.2f}" if half is not None else "")


def l1_vs_l2(study: PruningStudy, mode: Mode, level: float) -> Difference | None:
    return study.compared(
        study.point(Penalty.L1, mode, level), study.point(Penalty.L2, mode, level)
    )


def versus(study: PruningStudy, first: Penalty, second: Penalty, mode: Mode, level: float) -> str:
    d = study.compared(study.point(first, mode, level), study.point(second, mode, level))
    if d is None or d.decisive_p is None:
        return "-" if d is None else f"{d.estimate:+.2f} (too few seeds)"
    return f"{d.estimate:+.2f} +- {d.half_width:.2f} (p {p_text(d.decisive_p)})"


def table(study: PruningStudy, markdown: bool = False) -> str:
    """A row per mode and level: each penalty's accuracy (seed mean +- 95% interval), each
    penalty against none and L1 against L2 (paired, Holm p), and the zipped ONNX sizes."""
    penalties = list(study.strengths)
    pairs = [(p, Penalty.NONE) for p in penalties if p is not Penalty.NONE]
    pairs += [(Penalty.L1, Penalty.L2)] if {Penalty.L1, Penalty.L2} <= set(penalties) else []
    names = {Penalty.NONE: "none", Penalty.L1: "L1", Penalty.L2: "L2"}
    headers = ["retraining", "pruned", *(penalty_label(study, p) for p in penalties)]
    headers += [f"{names[a]} - {names[b]} (Holm p)" for a, b in pairs]
    headers.append(f"zipped ONNX KB ({' / '.join(names[p] for p in penalties)})")
    dense = [
        f"{study.dense[p].mean:.2f} +- {study.dense[p].half_width or 0:.2f}" for p in penalties
    ]
    sizes = " / ".join(f"{study.dense_kb[p]:.1f}" for p in penalties)
    rows = [["(dense)", "0%", *dense, *["-"] * len(pairs), sizes]]
    for mode in [Mode.none, *study.retraining]:
        for level in study.sparsities:
            points = [study.point(p, mode, level) for p in penalties]
            kb = " / ".join(f"{s.zipped_kb:.1f}" for s in points if s and s.zipped_kb) or "-"
            rows.append(
                [
                    mode.value,
                    percent(level),
                    *(cell(study, p, mode, level) for p in penalties),
                    *(versus(study, a, b, mode, level) for a, b in pairs),
                    kb,
                ]  # fmt: skip
            )
    return render(headers, rows, markdown=markdown, align="<>" + ">" * (len(headers) - 2))


def mode_sentence(study: PruningStudy, mode: Mode) -> str | None:
    """Where L1 and L2 differ measurably in one mode, with the largest difference's numbers."""
    found = [(level, l1_vs_l2(study, mode, level)) for level in study.sparsities]
    found = [(level, d) for level, d in found if d is not None]
    if not found:
        return None
    l1 = [level for level, d in found if d.measurable and d.estimate > 0]
    l2 = [level for level, d in found if d.measurable and d.estimate < 0]
    level, largest = max(found, key=lambda x: abs(x[1].estimate))
    a, b = (study.point(p, mode, level).accuracy.mean for p in (Penalty.L1, Penalty.L2))
    numbers = f"at {percent(level)}: {a:.2f}% against {b:.2f}%, {interval(largest)}"
    name = {Mode.none: "Without retraining", Mode.one_shot: "After one-shot retraining",
            Mode.iterative: "After iterative retraining"}[mode]  # fmt: skip
    if not l1 and not l2:
        return f"{name}, no level measurably separates L1 from weight decay (largest, {numbers})."
    parts = []
    if l1:
        parts.append(f"L1 is measurably more accurate than weight decay at {levels_text(l1)}")
    if l2:
        parts.append(f"weight decay is measurably more accurate than L1 at {levels_text(l2)}")
    return f"{name}, {' and '.join(parts)} ({numbers})."


def han_sentence(study: PruningStudy) -> str | None:
    """Han et al.'s two halves, checked against the study's L1 - L2 differences."""

    def wins(mode: Mode, sign: int) -> list[float]:
        ds = [(lv, l1_vs_l2(study, mode, lv)) for lv in study.sparsities]
        return [lv for lv, d in ds if d is not None and d.measurable and sign * d.estimate > 0]

    def tested(mode: Mode) -> bool:
        ds = [l1_vs_l2(study, mode, lv) for lv in study.sparsities]
        return any(d is not None and d.decisive_p is not None for d in ds)

    if not tested(Mode.none) or not any(tested(m) for m in study.retraining):
        return None  # L1 and L2 not both compared, before and after retraining
    before = wins(Mode.none, 1)
    after = {mode: wins(mode, -1) for mode in study.retraining}
    first = f"holds at {levels_text(before)}" if before else "does not show (no level)"
    shown = [f"{m.value} at {levels_text(v)}" for m, v in after.items() if v]
    budget = "; ".join(
        f"{m.value} {steps * epochs} epoch{'s' if steps * epochs > 1 else ''}"
        for m, (epochs, steps, _) in study.retraining.items()
    )
    second = (
        f"shows here ({'; '.join(shown)})"
        if shown
        else f"does not show with this much retraining ({budget}): weight decay is nowhere "
        "measurably ahead of L1 after it; longer retraining was not tried"
    )
    return (
        "Han et al. (2015) found L1 better than L2 right after pruning and L2 better once the "
        f"network is retrained. On this network the first half {first}; the second {second}."
    )


def recovery_sentence(study: PruningStudy) -> str | None:
    level = study.sparsities[-1]
    points = [study.point(Penalty.NONE, m, level) for m in (Mode.none, *study.retraining)]
    if any(p is None for p in points) or len(points) < 2:
        return None
    how = {Mode.none: "without retraining", Mode.one_shot: "after one-shot retraining",
           Mode.iterative: "after iterative retraining"}  # fmt: skip
    said = [f"{p.accuracy.mean:.2f}% {how[p.mode]}" for p in points]
    dense = study.dense[Penalty.NONE].mean
    return (
        f"With {percent(level)} of its conv weights pruned, the unregularized network keeps "
        f"{', '.join(said[:-1])} and {said[-1]} (dense: {dense:.2f}%)."
    )


def iterative_sentence(study: PruningStudy) -> str | None:
    if Mode.iterative not in study.retraining or Mode.one_shot not in study.retraining:
        return None
    better, worse = [], []
    for penalty in study.strengths:
        for level in study.sparsities:
            d = study.compared(
                study.point(penalty, Mode.iterative, level),
                study.point(penalty, Mode.one_shot, level),
            )
            if d is not None and d.measurable:
                which = better if d.estimate > 0 else worse
                which.append(f"{penalty_label(study, penalty)} at {percent(level)} ({interval(d)})")
    epochs, steps, _ = study.retraining[Mode.iterative]
    one, _, _ = study.retraining[Mode.one_shot]
    budget = f"it retrains {steps * epochs} epochs in all against one-shot's {one}"
    tested = [
        c
        for c in study.comparisons
        if c.first.mode is Mode.iterative and c.second.mode is Mode.one_shot
    ]
    if not any(c.difference.decisive_p is not None for c in tested):
        return None  # nothing was compared
    if not better and not worse:
        return f"Iterative retraining is nowhere measurably better than one-shot ({budget})."
    said = (
        f"Iterative retraining ({budget}) is measurably better than one-shot for "
        + "; ".join(better)
        if better
        else ""
    )
    if worse:
        said += (
            "; and worse for " if said else "Iterative retraining is measurably worse for "
        ) + "; ".join(worse)
    return said + "."


def size_sentence(study: PruningStudy) -> str | None:
    level = study.sparsities[-1]
    sizes = [study.point(p, m, level) for p in study.strengths for m in study.retraining]
    sizes = [s.zipped_kb for s in sizes if s is not None and s.zipped_kb]
    if not sizes:
        return None
    pruned, dense = sum(sizes) / len(sizes), sum(study.dense_kb.values()) / len(study.dense_kb)
    return (
        f"On disk, a network with {percent(level)} of its conv weights pruned zips to "
        f"{pruned:.1f} KB against {dense:.1f} KB dense ({dense / pruned:.1f} times smaller); "
        "unzipped the ONNX file keeps its size, since its zeros are stored like any weight."
    )


def method_sentences(study: PruningStudy) -> list[str]:
    names = ", ".join(penalty_label(study, p) for p in study.strengths)
    seeds = sorted({study.dense[p].n for p in study.strengths})
    s = study.settings
    how = []
    for mode, (epochs, steps, lr) in study.retraining.items():
        times = (
            f"{steps} prune-then-retrain steps of {epochs} epoch"
            if steps > 1
            else f"{epochs} epoch"
        )
        how.append(f"{mode.value}: {times}{'s' if epochs > 1 else ''} at peak lr {lr:g}")
    said = [
        f"Sources: {names}, models of the regularization path ({study.sweep}), "
        f"{'-'.join(map(str, seeds))} seeds each. Each is pruned to "
        f"{levels_text(study.sparsities)} of its conv weights (the smallest magnitudes, ranked "
        "over all conv layers) and retrained with those weights held at exactly zero "
        f"({'; '.join(how)}; the source's {SCHEDULES.get(s.schedule, s.schedule)} schedule "
        "and penalty, its "
        f"{s.train_images:,} training images).",
        comparisons_sentence(study),
    ]
    runs = study_runs(study.folders)
    if runs:
        said.append(runs_text(runs, "The {models} pruned runs"))
    return said


def comparisons_sentence(study: PruningStudy) -> str:
    tested = [c.difference for c in study.comparisons if c.difference.decisive_p is not None]
    methods = sorted({d.method for d in tested}) or ["paired"]
    how = (
        "paired seed by seed"
        if methods == ["paired"]
        else "paired seed by seed where both sides hold the same seeds, else by Welch's t"
    )
    untested = len(study.comparisons) - len(tested)
    missing = (
        f" ({untested} more could not be made: fewer than two seeds on a side)" if untested else ""
    )
    return (
        f"Every difference is {how}; the {len(tested)} comparisons of the study are "
        f"Holm-adjusted together{missing}."
    )


def findings(study: PruningStudy) -> list[str]:
    sentences = method_sentences(study)
    sentences += [mode_sentence(study, m) for m in (Mode.none, *study.retraining)]
    sentences += [han_sentence(study), recovery_sentence(study), iterative_sentence(study)]
    sentences.append(size_sentence(study))
    return [s for s in sentences if s]


def section(study: PruningStudy, figure: str | None) -> str:
    """The README section: findings, the table, the figure."""
    lines = [f"- {s}" for s in findings(study)]
    text = "\n".join(lines) + "\n\n" + table(study, markdown=True) + "\n"
    if figure:
        text += f"\n![accuracy against the share of conv weights pruned, three ways]({figure})\n"
    return text


def study_figure(study: PruningStudy, name: str, images_dir: Path) -> Path:
    target = figure_path(images_dir, name, "study")
    save_figure(pruning_study_figure(study, [Mode.none, *study.retraining]), target)
    return target
