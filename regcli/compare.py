"""Side-by-side comparison of trained models: one row per model, and per seed group its mean,
spread and 95% Welch interval against the unregularized group.

The table shows what regularization is supposed to change: the train-test gap (overfitting), the
L1 norm of the weights and the share of near-zero weights (sparsity, what L1 should increase).
A seed group is only the real seed-<k> folders of one parent, and is averaged only if its members
share one configuration (the seed aside), each holds its own seed and no two hold the same
weights; any other model stands alone, under a label unique among the models compared.
"""

from pathlib import Path

import numpy as np

from regcli.checkpoints import checkpoint_config, load_checkpoint, model_from_checkpoint
from regcli.config import TrainConfig
from regcli.errors import RegcliError
from regcli.groups import Member, check_group, check_seed_folder, weights_sha256
from regcli.layout import checkpoint_path, is_seed_member, model_label
from regcli.records import load_metrics
from regcli.stats import mean, sample_std, welch
from regcli.tables import render
from regcli.weights import NEAR_ZERO, weight_stats

README_SECTION = ("results-table", "regcli report")  # the README's generated results tables
COLUMNS = {  # key -> (header, format)
    "model": ("model", "{}"),
    "parameters": ("params", "{:,}"),
    "l1": ("l1", "{:g}"),
    "weight_decay": ("weight decay", "{:g}"),
    "final_test_accuracy": ("final test acc %", "{:.2f}"),
    "best_test_accuracy": ("best test acc % (epoch)", "{:.2f}"),
    "final_train_accuracy": ("final train acc %", "{:.2f}"),
    "gap": ("train-test gap (points)", "{:+.2f}"),
    "weight_l1_norm": ("weight L1 norm", "{:.1f}"),
    "near_zero_share": (f"near-zero weights % (<{NEAR_ZERO:g})", "{:.2f}"),
}
SEED_HEADERS = [
    "variant",
    "seeds",
    "final test acc % (mean +- std)",
    "min",
    "max",
    "vs none (95% Welch interval)",
    "weight L1 norm (mean)",
    f"near-zero weights % (<{NEAR_ZERO:g}, mean)",
]


def summarize(model_dir: Path, label: str | None = None) -> dict:
    """One row of the comparison, from metrics.json and model.pt (which must agree)."""
    metrics = load_metrics(model_dir)
    path = checkpoint_path(model_dir)
    payload = load_checkpoint(path)
    config = checkpoint_config(payload, path)
    if TrainConfig.from_dict(metrics["config"]) != config:
        raise RegcliError(f"{model_dir}: model.pt and metrics.json disagree; train it again")
    check_seed_folder(Path(model_dir), config)
    label = label or model_label(model_dir)
    seeded = is_seed_member(model_dir)
    history = metrics["epochs"]
    final = history[-1]
    best = max(history, key=lambda r: r["test_accuracy"])
    weights = weight_stats(model_from_checkpoint(payload, path))
    return {
        "model": label,
        "group": label.rsplit("/", 1)[0] if seeded else label,
        "group_path": str(Path(model_dir).resolve().parent if seeded else model_dir),
        "seeded": seeded,
        "config": config,
        "weights_sha256": weights_sha256(payload["state_dict"]),
        "mode": config.mode,
        "parameters": payload["parameters"],
        "l1": config.l1,
        "weight_decay": config.weight_decay,
        "final_test_accuracy": 100 * final["test_accuracy"],
        "best_test_accuracy": 100 * best["test_accuracy"],
        "best_epoch": best["epoch"],
        "final_train_accuracy": 100 * final["train_accuracy"],
        "gap": 100 * (final["train_accuracy"] - final["test_accuracy"]),
        "weight_l1_norm": weights["l1_norm"],
        "near_zero_share": 100 * weights[f"below_{NEAR_ZERO:g}"],
        "history": history,
    }


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The seeds of <name>/seed-<k> form the group "<name> seeds"; any other model is alone
    (models/<name>/model.pt itself is not one of the seeds). A group whose members differ in
    configuration (the seed aside) is refused, not averaged."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        key = f"{row['group_path']} seeds" if row["seeded"] else row["model"]
        grouped.setdefault(key, []).append(row)
    for members in grouped.values():
        group = [Member(Path(m["model"]), m["config"], m["weights_sha256"]) for m in members]
        check_group(group, f"seed group {members[0]['group']}")
    return grouped


def seed_summary(rows: list[dict]) -> list[dict]:
    """Per group of two or more seeds: final test accuracy mean, spread, and the difference
    from the unregularized group with its 95% Welch interval."""
    seeded = {name: members for name, members in groups(rows).items() if len(members) > 1}
    baseline = next((m for m in seeded.values() if m[0]["mode"] == "none"), None)
    summary = []
    for members in seeded.values():
        finals = [m["final_test_accuracy"] for m in members]
        entry = {
            "group": members[0]["group"],
            "seeds": len(members),
            "mean": mean(finals),
            "std": sample_std(finals),
            "min": min(finals),
            "max": max(finals),
            "weight_l1_norm": mean([m["weight_l1_norm"] for m in members]),
            "near_zero_share": mean([m["near_zero_share"] for m in members]),
            "versus_none": "",
        }
        if baseline is not None and members is not baseline:
            difference = welch(finals, [m["final_test_accuracy"] for m in baseline])
            entry.update(
                difference=difference.estimate,
                half_width=difference.half_width,
                versus_none=difference.verdict(),
            )
        summary.append(entry)
    return summary


def series(rows: list[dict]) -> list[dict]:
    """Per group, its accuracy and loss per epoch (seed groups: mean, min and max), for
    plots.compare_figure."""
    out = []
    for name, members in groups(rows).items():
        epochs = [r["epoch"] for r in members[0]["history"]]
        entry = {
            "label": name if len(members) == 1 else f"{members[0]['group']} ({len(members)} seeds)",
            "group": members[0]["group"],
            "seeds": len(members),
            "epochs": epochs,
        }
        for key, field, scale in (("accuracy", "test_accuracy", 100), ("loss", "test_loss", 1)):
            curves = np.array([[scale * r[field] for r in m["history"]] for m in members])
            entry[key] = {
                "mean": curves.mean(0).tolist(),
                "low": curves.min(0).tolist(),
                "high": curves.max(0).tolist(),
            }
        out.append(entry)
    return out


def cells(row: dict) -> list[str]:
    values = []
    for key, (_, fmt) in COLUMNS.items():
        text = fmt.format(row[key])
        if key == "best_test_accuracy":
            text += f" ({row['best_epoch']})"
        values.append(text)
    return values


def seed_cells(entry: dict) -> list[str]:
    return [
        entry["group"],
        str(entry["seeds"]),
        f"{entry['mean']:.3f} +- {entry['std']:.3f}",
        f"{entry['min']:.2f}",
        f"{entry['max']:.2f}",
        entry["versus_none"] or "-",
        f"{entry['weight_l1_norm']:.1f}",
        f"{entry['near_zero_share']:.2f}",
    ]


def comparison_tables(rows: list[dict], markdown: bool) -> str:
    """Every model, then the seed groups (if any), as text or Markdown."""
    tables = [render([h for h, _ in COLUMNS.values()], [cells(r) for r in rows], markdown=markdown)]
    if any(len(m) > 1 for m in groups(rows).values()):
        tables.append(
            render(SEED_HEADERS, [seed_cells(e) for e in seed_summary(rows)], markdown=markdown)
        )
    return "\n\n".join(tables)


def results_markdown(rows: list[dict]) -> str:
    """The README's results: the single runs, then the seed groups (if any)."""
    singles = [r for r in rows if not r["seeded"]]
    headers = [h for h, _ in COLUMNS.values()]
    parts = [render(headers, [cells(r) for r in singles], markdown=True)] if singles else []
    if any(len(m) > 1 for m in groups(rows).values()):
        parts.append(
            render(SEED_HEADERS, [seed_cells(e) for e in seed_summary(rows)], markdown=True)
        )
    return "\n\n".join(parts)


def as_json(rows: list[dict]) -> dict:
    """Everything `compare` shows, as plain data."""
    plain = [
        {
            k: (v.as_dict() if k == "config" else v)
            for k, v in r.items()
            if k not in ("history", "group_path", "weights_sha256")
        }
        for r in rows
    ]
    return {"models": plain, "seed_groups": seed_summary(rows)}
