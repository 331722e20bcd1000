"""Side-by-side comparison of trained models: one figure, one table.

The table shows what regularization is supposed to change: the train-test gap (overfitting), the
L1 norm of the weights and the share of near-zero weights (sparsity, what L1 should increase).
"""

from pathlib import Path

import torch
from matplotlib.figure import Figure

from regcli.artifacts import SEED_PREFIX, load_metrics, model_group, model_label
from regcli.checkpoints import load_checkpoint, model_from_checkpoint
from regcli.plots import save_figure
from regcli.stats import mean, sample_std, welch
from regcli.weights import THRESHOLDS, weight_stats

README_SECTION = ("results-table", "regcli report")  # the README's generated results tables
NEAR_ZERO = THRESHOLDS[0]  # |w| below this counts as a near-zero weight
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


def summarize(model_dir: Path) -> dict:
    """One row of the comparison, from metrics.json and model.pt."""
    metrics = load_metrics(model_dir)
    payload = load_checkpoint(model_dir)
    history = metrics["epochs"]
    final = history[-1]
    best = max(history, key=lambda r: r["test_accuracy"])
    weights = weight_stats(model_from_checkpoint(payload))
    return {
        "model": model_label(model_dir),
        "group": model_group(model_dir),
        "seeded": model_dir.name.startswith(SEED_PREFIX),
        "mode": payload["mode"],
        "parameters": payload["parameters"],
        "l1": payload["l1"],
        "weight_decay": payload["weight_decay"],
        "final_test_accuracy": 100 * final["test_accuracy"],
        "best_test_accuracy": 100 * best["test_accuracy"],
        "best_epoch": best["epoch"],
        "final_train_accuracy": 100 * final["train_accuracy"],
        "gap": 100 * (final["train_accuracy"] - final["test_accuracy"]),
        "weight_l1_norm": weights["l1_norm"],
        "near_zero_share": 100 * weights[f"below_{NEAR_ZERO:g}"],
        "history": history,
    }


def cells(row: dict) -> list[str]:
    values = []
    for key, (_, fmt) in COLUMNS.items():
        text = fmt.format(row[key])
        if key == "best_test_accuracy":
            text += f" ({row['best_epoch']})"
        values.append(text)
    return values


def text(headers: list[str], body: list[list[str]]) -> str:
    """An aligned plain-text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) for v, w in zip(values, widths, strict=True)]
        padded[0] = values[0].ljust(widths[0])
        return "  ".join(padded)

    return "\n".join([line(headers), *(line(b) for b in body)])


def comparison_tables(rows: list[dict], as_markdown: bool) -> str:
    """Every model, then the seed groups (if any), as text or Markdown."""
    render = markdown if as_markdown else text
    tables = [render([h for h, _ in COLUMNS.values()], [cells(r) for r in rows])]
    if any(len(m) > 1 for m in groups(rows).values()):
        tables.append(render(SEED_HEADERS, [seed_cells(e) for e in seed_summary(rows)]))
    return "\n\n".join(tables)


def markdown_table(rows: list[dict]) -> str:
    return markdown([header for header, _ in COLUMNS.values()], [cells(r) for r in rows])


def compare_figure(rows: list[dict]) -> Figure:
    """Test accuracy and loss per epoch: a line per model, or per seed group its mean line with
    the seeds' range shaded."""
    figure = Figure(figsize=(12, 4.5))
    accuracy, loss = figure.subplots(1, 2)
    for i, (name, members) in enumerate(groups(rows).items()):
        epochs = [r["epoch"] for r in members[0]["history"]]
        style = {"linestyle": ["-", "--", "-.", ":"][(i // 10) % 4], "color": f"C{i % 10}"}
        label = name if len(members) == 1 else f"{members[0]['group']} ({len(members)} seeds)"
        for axes, key, scale in ((accuracy, "test_accuracy", 100), (loss, "test_loss", 1)):
            curves = torch.tensor([[scale * r[key] for r in m["history"]] for m in members])
            axes.plot(epochs, curves.mean(0), marker="o", markersize=2.5, label=label, **style)
            if len(members) > 1:
                axes.fill_between(
                    epochs,
                    curves.min(0).values,
                    curves.max(0).values,
                    alpha=0.2,
                    color=style["color"],
                    linewidth=0,
                )
    accuracy.set(title="Test (validation) accuracy", xlabel="epoch", ylabel="accuracy (%)")
    loss.set(title="Test (validation) loss", xlabel="epoch", ylabel="cross-entropy")
    finals = [100 * r["history"][-1]["test_accuracy"] for r in rows]
    accuracy.set_ylim(max(min(finals) - 1.0, 90), min(max(finals) + 0.3, 100))
    loss.set_yscale("log")
    for axes in (accuracy, loss):
        axes.grid(alpha=0.3)
    loss.legend(loc="upper right", fontsize=8, ncols=2 if len(rows) > 5 else 1)
    figure.suptitle("Model comparison")
    return figure


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The seeds of models/<name>/seed-<k> form the group <name>; any other model is alone
    (models/<name>/model.pt itself is not one of the seeds)."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        key = f"{row['group']} seeds" if row["seeded"] else row["model"]
        grouped.setdefault(key, []).append(row)
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


def markdown(headers: list[str], body: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |",
    ]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def results_markdown(rows: list[dict]) -> str:
    """The README's results: the single runs, then the seed groups (if any)."""
    singles = [r for r in rows if not r["seeded"]]
    parts = [markdown_table(singles)] if singles else []
    if any(len(m) > 1 for m in groups(rows).values()):
        parts.append(markdown(SEED_HEADERS, [seed_cells(e) for e in seed_summary(rows)]))
    return "\n\n".join(parts)


def compare(model_dirs: list[Path], figure_path: Path) -> list[dict]:
    rows = [summarize(d) for d in model_dirs]
    save_figure(compare_figure(rows), figure_path)
    return rows
