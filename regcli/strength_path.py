"""Regularization paths: a sweep's cells (one strength pair each, several seeds) read back from
disk, and per cell the statistics the path figures and table show.

A sweep lives in <models-dir>/<sweep>/<cell>/seed-<k>/, each an ordinary model folder; the
cell's name says its strengths (`l1-3e-05_wd-0`) and reads back to them. Per cell: final test
accuracy (seed mean, spread, 95% interval, and Welch's interval against the unregularized cell),
the share of near-zero conv weights, their L1 norm, and accuracy after magnitude pruning.
Pruned accuracies are cached beside each model (pruning.json), keyed by the sha256 of its
model.pt, so a report over 70 models recomputes only what changed; a cache whose numbers are not
finite percentages is measured again. A cell folder must carry its canonical name, its seeds
must be real seed-<k> folders of seed k with distinct weights, and a finished seed whose model.pt
is gone is "missing", not "diverged".
"""

import math
from pathlib import Path

from regcli.checkpoints import (
    CHECKPOINT_FORMAT,
    checked_checkpoint,
    checkpoint_config,
    model_from_checkpoint,
    read_payload,
)
from regcli.config import TrainConfig, check_same_settings
from regcli.errors import RegcliError
from regcli.files import FileProblem, read_json, sha256_bytes, write_json
from regcli.groups import Member, check_group, check_seed_folder, weights_sha256
from regcli.layout import CHECKPOINT_NAME, cell_name, is_seed_member, parse_cell, seed_number
from regcli.locks import ModelLock
from regcli.records import METRICS_NAME, load_metrics
from regcli.stats import mean, mean_half_width, sample_std, welch
from regcli.tables import render
from regcli.text import natural_key
from regcli.weights import NEAR_ZERO, pruned_predictors, pruned_state, weight_stats

# The course notebook's best test accuracy (%) per variant, one run each, as its README reports
# them (shared/origin/notebook-README.md): the single-run conclusions the path is held against.
NOTEBOOK_ACCURACY = {"none": 99.42, "l1": 99.59, "l2": 99.46, "l1_l2": 99.35}
PATH_SPARSITIES = (0.5, 0.7, 0.9)  # shares of conv weights zeroed for the pruned-accuracy path
CACHE_NAME = "pruning.json"
README_SECTION = ("path-table", "regcli report")


def path_of(l1: float, weight_decay: float) -> str:
    return {(False, False): "none", (True, False): "l1", (False, True): "l2"}.get(
        (l1 > 0, weight_decay > 0), "both"
    )


def read_cells(sweep_dir: Path) -> list[dict]:
    """Every cell folder of a sweep with its seeds' folders (finished or diverged), in order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RegcliError(f"no sweep at {sweep_dir}; run `regcli sweep` first")
    cells = []
    for folder in sorted(sweep_dir.iterdir(), key=natural_key):
        strengths = parse_cell(folder.name) if folder.is_dir() else None
        if strengths is None:
            continue
        if folder.name != cell_name(*strengths):
            raise RegcliError(
                f"{folder}: not a cell name regcli writes (this cell is "
                f"{cell_name(*strengths)}); rename the folder, or move it out of the sweep"
            )
        all_seeds = [p for p in folder.iterdir() if is_seed_member(p)]
        seeds = sorted((p for p in all_seeds if finished_or_diverged(p)), key=seed_number)
        if seeds:
            l1, weight_decay = strengths
            cells.append(
                {
                    "name": folder.name,
                    "l1": l1,
                    "weight_decay": weight_decay,
                    "path": path_of(l1, weight_decay),
                    "seeds": seeds,
                    "unfinished": len(all_seeds) - len(seeds),
                }
            )
    if not cells:
        raise RegcliError(f"no finished cells under {sweep_dir}; run `regcli sweep` first")
    order = {"none": 0, "l1": 1, "l2": 2, "both": 3}
    return sorted(cells, key=lambda c: (order[c["path"]], c["l1"], c["weight_decay"]))


def finished_or_diverged(folder: Path) -> bool:
    return (folder / CHECKPOINT_NAME).is_file() or (folder / METRICS_NAME).is_file()


def read_member(model_dir: Path) -> dict:
    """One seed as it is on disk, checked: its config (seed k in seed-<k>), its status, and
    its checkpoint (agreeing with its metrics) if it has one. Nothing is measured yet."""
    metrics = load_metrics(model_dir)
    config = TrainConfig.from_dict(metrics["config"], str(model_dir / METRICS_NAME))
    check_seed_folder(model_dir, config)
    member = {"dir": model_dir, "config": config, "metrics": metrics, "weights": None}
    if metrics.get("status") == "diverged":
        return {**member, "diverged": metrics["diverged"], "missing": False}
    if not (model_dir / CHECKPOINT_NAME).is_file():
        return {**member, "diverged": None, "missing": True}
    path = model_dir / CHECKPOINT_NAME
    payload, raw = read_payload(path, CHECKPOINT_FORMAT)
    if checkpoint_config(checked_checkpoint(payload, path), path) != config:
        raise RegcliError(f"{model_dir}: model.pt and metrics.json disagree; train it again")
    model = model_from_checkpoint(payload, model_dir)
    return {
        **member,
        "diverged": None,
        "missing": False,
        "model": model,
        "sha256": sha256_bytes(raw),
        "weights": weights_sha256(payload["state_dict"]),
    }


def member_stats(member: dict, test, *, backend: str, device: str) -> dict:
    """One seed's numbers: final accuracy, weights, pruned accuracies (cached); a diverged or
    missing seed (finished, but its model.pt is gone) has none."""
    if member["diverged"] or member["missing"]:
        return member
    model, model_dir = member["model"], member["dir"]
    test = test.head(member["config"].limit_test)  # the test images it was measured on
    weights = weight_stats(model)
    pruned = pruned_accuracies(model_dir, model, member["sha256"], test, backend, device)
    return {
        **member,
        "accuracy": 100 * member["metrics"]["epochs"][-1]["test_accuracy"],
        "near_zero_share": 100 * weights[f"below_{NEAR_ZERO:g}"],
        "l1_norm": weights["l1_norm"],
        "pruned": pruned,
    }


def pruned_accuracies(model_dir, model, sha256: str, test, backend: str, device: str) -> dict:
    """Accuracy (%) after zeroing each share in PATH_SPARSITIES, from the cache when it is for
    this very model.pt, this backend and this test set; the cache is refreshed otherwise."""
    key = {"source_sha256": sha256, "backend": backend, "test_images": len(test)}
    path = Path(model_dir) / CACHE_NAME
    known = cached_accuracies(path, key)
    missing = [s for s in PATH_SPARSITIES if repr(s) not in known]
    if missing:
        from regcli.scoring import score

        predictor_with = pruned_predictors(model_dir, model, backend, device)
        for sparsity in missing:
            known[repr(sparsity)] = (
                100 * score(predictor_with(pruned_state(model, sparsity)), test).accuracy
            )
        try:
            with ModelLock(model_dir, "regcli pruning cache"):
                write_json(path, {**key, "device": device, "accuracy": known})
        except RegcliError:  # locked by a run, or a read-only folder: keep the numbers anyway
            pass
    return {repr(s): known[repr(s)] for s in PATH_SPARSITIES}


def cached_accuracies(path: Path, key: dict) -> dict[str, float]:
    """The pruned accuracies in a cache, if it is for `key` and every number in it is a finite
    percentage; else nothing (they are measured again)."""
    try:
        cache = read_json(path) if path.exists() else {}
    except FileProblem:
        return {}
    if not isinstance(cache, dict) or any(cache.get(k) != v for k, v in key.items()):
        return {}
    known = cache.get("accuracy")
    if not isinstance(known, dict):
        return {}
    return {
        level: value
        for level, value in known.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 100
    }


def summarize_cell(cell: dict, members: list[dict], baseline: list[float] | None) -> dict:
    """A cell's seed statistics (and its difference from the unregularized cell)."""
    first = members[0]["config"]
    if (first.l1, first.weight_decay) != (cell["l1"], cell["weight_decay"]):
        raise RegcliError(
            f"cell {cell['name']}: its name says l1 {cell['l1']:g}, weight decay "
            f"{cell['weight_decay']:g}, its models were trained with l1 {first.l1:g}, weight "
            f"decay {first.weight_decay:g}"
        )
    good = [m for m in members if not m["diverged"] and not m["missing"]]
    missing = sum(1 for m in members if m["missing"])
    strength = {"l1": cell["l1"], "l2": cell["weight_decay"]}.get(cell["path"], 0.0)
    out = {
        "cell": cell["name"],
        "l1": cell["l1"],
        "weight_decay": cell["weight_decay"],
        "path": cell["path"],
        "strength": strength,
        "seeds": len(members),
        "unfinished": cell["unfinished"],
        "diverged": len(members) - len(good) - missing,
        "missing": missing,
        "epochs": first.epochs,
    }
    if not good:
        return {**out, "accuracy": None}
    for key in ("accuracy", "near_zero_share", "l1_norm"):
        values = [m[key] for m in good]
        half = mean_half_width(values)
        out[key] = mean(values)
        out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
        out[f"{key}_std"] = sample_std(values)
        out[f"{key}_half_width"] = None if math.isnan(half) else half
    out["pruned"] = {s: mean([m["pruned"][s] for m in good]) for s in good[0]["pruned"]}
    out["versus_none"] = "-"
    if baseline is not None and cell["path"] != "none":
        difference = welch([m["accuracy"] for m in good], baseline)
        out["versus_none"] = difference.verdict()
        out["difference"] = difference.estimate
        out["difference_half_width"] = (
            None if math.isnan(difference.half_width) else difference.half_width
        )
    return out


def path_stats(
    sweep_dir: Path,
    test,
    *,
    backend: str = "torch",
    device: str = "cpu",
    advance=lambda name="": None,
) -> list[dict]:
    """Every cell of the sweep, summarized; the unregularized cell is the baseline."""
    cells = read_cells(sweep_dir)
    read = [(cell, [read_member(d) for d in cell["seeds"]]) for cell in cells]
    for cell, members in read:  # every group checked before anything is measured or cached
        group = [Member(m["dir"], m["config"], m["weights"]) for m in members]
        check_group(group, f"cell {cell['name']}")
    check_same_settings(  # the cells differ in their strengths only
        [(cell["name"], members[0]["config"]) for cell, members in read],
        f"sweep {sweep_dir}",
        ignore=("l1", "weight_decay", "seed"),
    )
    measured = []
    for cell, members in read:
        stats = []
        for member in members:
            stats.append(member_stats(member, test, backend=backend, device=device))
            advance(f"{cell['name']}/{member['dir'].name}")
        measured.append((cell, stats))
    base = next((m for c, m in measured if c["path"] == "none"), None)
    baseline = [m["accuracy"] for m in base if "accuracy" in m] if base else None
    baseline = baseline or None  # an unregularized cell whose every seed diverged: no baseline
    return [summarize_cell(cell, members, baseline) for cell, members in measured]


PATH_HEADERS = [
    "cell",
    "l1",
    "weight decay",
    "seeds",
    "final test acc % (mean +- std)",
    "vs none (95% Welch interval)",
    f"near-zero % (<{NEAR_ZERO:g})",
    "weight L1 norm",
    *(f"acc % at {100 * s:g}% zeroed" for s in PATH_SPARSITIES),
]


def path_rows(stats: list[dict]) -> list[list[str]]:
    rows = []
    for c in stats:
        notes = [f"{c[k]} {k}" for k in ("diverged", "missing", "unfinished") if c.get(k)]
        seeds = f"{c['seeds']}" + (f" ({', '.join(notes)})" if notes else "")
        if c.get("accuracy") is None:
            rows.append(
                [
                    c["cell"],
                    f"{c['l1']:g}",
                    f"{c['weight_decay']:g}",
                    seeds,
                    "diverged" if c["diverged"] == c["seeds"] else "no model",
                    "-",
                    "-",
                    "-",
                    *("-" for _ in PATH_SPARSITIES),
                ]
            )
            continue
        rows.append(
            [
                c["cell"],
                f"{c['l1']:g}",
                f"{c['weight_decay']:g}",
                seeds,
                f"{c['accuracy']:.2f} +- {c['accuracy_std']:.2f}",
                c["versus_none"],
                f"{c['near_zero_share']:.2f}",
                f"{c['l1_norm']:.1f}",
                *(f"{c['pruned'][repr(s)]:.2f}" for s in PATH_SPARSITIES),
            ]
        )
    return rows


def path_table(stats: list[dict], markdown: bool = False) -> str:
    return render(PATH_HEADERS, path_rows(stats), markdown=markdown)


def _fmt(path: str, strength: float) -> str:
    return f"{'l1' if path == 'l1' else 'weight decay'} = {strength:g}"


def findings(stats: list[dict], runs: dict | None = None) -> list[str]:
    """What the path says, as sentences computed from the numbers (for the README)."""
    base = next((c for c in stats if c["path"] == "none" and c.get("accuracy") is not None), None)
    if base is None:
        return ["The sweep has no finished unregularized cell to compare with."]
    said = []
    if runs:
        said.append(
            f"{runs['models']} models ({runs['cells']} cells x {runs['seeds']} seeds, "
            f"{runs['epochs']} epochs each) trained on {runs['machine']} in "
            f"{runs['seconds']:.0f} s of training ({runs['groups']} group"
            f"{'s' if runs['groups'] != 1 else ''} of up to {runs['largest_group']} models)."
        )
    for path, name in (("l1", "L1"), ("l2", "Weight decay")):
        cells = sorted((c for c in stats if c["path"] == path), key=lambda c: c["strength"])
        good = [c for c in cells if c.get("accuracy") is not None]
        if not cells:
            continue
        sparse = next(
            (c for c in good if c["near_zero_share"] >= 2 * base["near_zero_share"]), None
        )
        most = max(good, key=lambda c: c["near_zero_share"]) if good else None
        if sparse:
            reach = (
                f"; it reaches {most['near_zero_share']:.1f}% at {_fmt(path, most['strength'])}."
                if most is not sparse
                else "."
            )
            said.append(
                f"{name} first doubles the share of near-zero conv weights (|w| < {NEAR_ZERO:g}) "
                f"at {_fmt(path, sparse['strength'])}: {sparse['near_zero_share']:.1f}% against "
                f"{base['near_zero_share']:.1f}% without regularization{reach}"
            )
        elif most:
            said.append(
                f"No {name.lower()} strength in the sweep doubles the share of near-zero conv "
                f"weights: at most {most['near_zero_share']:.1f}% (at "
                f"{_fmt(path, most['strength'])}) against {base['near_zero_share']:.1f}%."
            )
        worse = next((c for c in good if c["versus_none"].startswith("worse")), None)
        lost = next((c for c in cells if c.get("accuracy") is None), None)
        if worse:
            said.append(
                f"{name}'s accuracy first falls measurably at {_fmt(path, worse['strength'])}: "
                f"{worse['accuracy']:.2f}% ({worse['versus_none']} against none's "
                f"{base['accuracy']:.2f}%)."
            )
        elif good:
            said.append(
                f"No {name.lower()} strength up to {_fmt(path, good[-1]['strength'])} is "
                f"measurably worse than none (every 95% Welch interval includes zero or is "
                f"above it)."
            )
        if lost and lost["diverged"] == lost["seeds"]:
            said.append(f"At {_fmt(path, lost['strength'])} every seed diverged.")
        elif lost:
            said.append(f"At {_fmt(path, lost['strength'])} no seed has a usable model.")
    top = max(PATH_SPARSITIES)
    key = repr(top)
    along = [c for c in stats if c["path"] in ("l1", "l2") and c.get("pruned")]
    if along and base.get("pruned"):
        best = max(along, key=lambda c: c["pruned"][key])
        said.append(
            f"With {100 * top:g}% of the conv weights zeroed (no retraining), the best cell, "
            f"{_fmt(best['path'], best['strength'])}, keeps {best['pruned'][key]:.1f}% test "
            f"accuracy where the unregularized network keeps {base['pruned'][key]:.1f}%."
        )
    widths = sorted(c["accuracy_half_width"] for c in stats if c.get("accuracy_half_width"))
    spreads = [c["accuracy_max"] - c["accuracy_min"] for c in stats if c.get("accuracy_max")]
    if widths and spreads:
        ranked = sorted(NOTEBOOK_ACCURACY, key=NOTEBOOK_ACCURACY.get)
        best, worst = ranked[-1], ranked[0]
        gap = NOTEBOOK_ACCURACY[best] - NOTEBOOK_ACCURACY[worst]
        said.append(
            f"The course notebook's single runs ranked {best} first "
            f"({NOTEBOOK_ACCURACY[best]:.2f}%) and {worst} last ({NOTEBOOK_ACCURACY[worst]:.2f}%), "
            f"{gap:.2f} points apart. Here the seeds of one cell spread by up to "
            f"{max(spreads):.2f} points and a {stats[0]['seeds']}-seed mean's 95% interval is "
            f"+-{widths[len(widths) // 2]:.2f} points (median over cells), so single runs at "
            f"these strengths cannot rank the penalties; the path's trend can."
        )
    return said
