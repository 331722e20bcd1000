"""What the README says of how the four-variant study was trained, from its models' records.

`make all-variants` reproduces the study in place (models/<variant>/, and with SEEDS=5 their
seed groups), and `make report` rewrites the README's results section. The sentences above its
tables are generated here from the runs themselves: their epochs and seeds, the device and
machine they trained on, how many trained at once and for how long, and whether a seed group's
member with the single run's seed reproduced that run exactly. A rerun on a CPU, or with
EPOCHS=1, therefore says so instead of keeping an older run's description.
"""

import math
from pathlib import Path

from regcli.core.errors import RegcliError
from regcli.store.layout import seed_number
from regcli.store.records import load_metrics
from regcli.studies.compare import ModelRow, results_markdown
from regcli.studies.timings import runs_summary, runs_text

CLOSE = 1e-9  # relative: the largest difference in two histories' numbers still called close


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def seeds_text(seeds: set[int]) -> str:
    shown = sorted(seeds)
    if len(shown) == 1:
        return f"seed {shown[0]}"
    if shown == list(range(shown[0], shown[-1] + 1)):
        return f"seeds {shown[0]}-{shown[-1]}"
    return f"seeds {', '.join(map(str, shown))}"


def largest_difference(ours: list[dict], theirs: list[dict]) -> float:
    """The largest relative difference between two histories' numbers (inf if they do not
    line up: other epochs or fields), seconds aside."""
    if len(ours) != len(theirs):
        return math.inf
    worst = 0.0
    for a, b in zip(without_time(ours), without_time(theirs), strict=True):
        if a.keys() != b.keys():
            return math.inf
        for key, value in a.items():
            other = b[key]
            if isinstance(value, int | float) and isinstance(other, int | float):
                scale = max(abs(value), abs(other)) or 1.0
                worst = max(worst, abs(value - other) / scale)
            elif value != other:
                return math.inf
    return worst


def reproduced(rows: list[ModelRow]) -> str | None:
    """Whether each single run's seed, trained again in its seed group, gave the same epoch
    records (None when no seed group holds a single run's configuration)."""
    singles = {r.group: r for r in rows if not r.seeded}
    exact, close, differ = [], [], []
    for row in rows:
        single = singles.get(row.group)
        if not row.seeded or single is None or row.config != single.config:
            continue
        gap = largest_difference(row.history, single.history)
        if gap == 0:
            exact.append(row.group)
        elif gap <= CLOSE:
            close.append(row.group)
        else:
            differ.append(
                f"{row.group} (final test accuracy {row.final_test_accuracy:.2f}% against "
                f"{single.final_test_accuracy:.2f}%)"
            )
    if not (exact or close or differ):
        return None
    seed = next(r.config.seed for r in rows if not r.seeded)
    parts = []
    if exact:
        parts.append(f"exactly (the same epoch records) for {', '.join(exact)}")
    if close:
        parts.append(
            f"to within {CLOSE:.0e} (relative) in every number of every epoch, though not bit "
            f"for bit, for {', '.join(close)}"
        )
    start = f"Trained again as a member of its seed group, seed {seed}"
    if not parts:
        return f"{start} did not reproduce the single run for {', '.join(differ)}."
    tail = f"; not for {', '.join(differ)}" if differ else ""
    return f"{start} reproduced the single run {'; '.join(parts)}{tail}."


def run_records(dirs: list[Path]) -> list[dict]:
    """Each model's run record, where it has one (regcli's first checkpoints kept none)."""
    found = []
    for folder in dirs:
        try:
            run = load_metrics(folder).get("run")
        except RegcliError:
            continue
        if isinstance(run, dict) and run:
            found.append(run)
    return found


def groups_text(runs: list[dict]) -> str:
    """How the models were grouped, from their run records ("" if none says)."""
    sizes = {r["group"].get("size", 1) for r in runs if isinstance(r.get("group"), dict)}
    if not sizes:
        return ""
    if sizes <= {1}:
        return ", each a network of its own (no grouping)"
    return f", in grouped networks of up to {max(sizes)} models"


def study_lines(rows: list[ModelRow], model_dirs: list[Path]) -> list[str]:
    """The sentences above the results tables (markdown list items)."""
    singles = [r for r in rows if not r.seeded]
    seeded = [d for d in model_dirs if seed_number(d) is not None]
    what = []
    if singles:
        seeds = seeds_text({r.config.seed for r in singles})
        what.append(f"{plural(len(singles), 'single run')} ({seeds})")
    if seeded:
        groups = len({d.parent for d in seeded})
        what.append(
            f"{plural(groups, 'seed group')} ({seeds_text({seed_number(d) for d in seeded})})"
        )
    epochs = sorted({r.config.epochs for r in rows})
    length = (
        f"{plural(epochs[0], 'epoch')} each"
        if len(epochs) == 1
        else f"{epochs[0]}-{epochs[-1]} epochs"
    )
    records = run_records(model_dirs)
    lines = [f"- {' and '.join(what)}, {length}{groups_text(records)}."]
    runs = runs_summary(records)
    if runs is not None:
        lines.append("- " + runs_text(runs, "The {models} models"))
    unknown = len(model_dirs) - len(records)
    if unknown:
        lines.append(
            f"- {plural(unknown, 'model')} of these predate regcli's run records (its first "
            "checkpoint format kept only the device and versions): where and how long "
            f"{'it' if unknown == 1 else 'they'} trained is not recorded."
        )
    sentence = reproduced(rows)
    if sentence:
        lines.append(f"- {sentence}")
    return lines


def results_section(rows: list[ModelRow], model_dirs: list[Path]) -> str:
    """The README's results section: these sentences, then the results tables."""
    return "\n".join(study_lines(rows, model_dirs)) + "\n\n" + results_markdown(rows)
