"""Side-by-side comparison of trained models: one `ModelRow` per model, and per seed group a
`SeedGroup` with its mean, spread and 95% interval against the unregularized group (seed by seed
where both hold the same seeds, else Welch), Holm-adjusted over the groups compared.

The table shows what regularization is supposed to change: the train-test gap (overfitting), the
L1 norm of the weights and the share of near-zero weights (sparsity, what L1 should increase).
A seed group is only the real seed-<k> folders of one parent, and is averaged only if its members
share one configuration (the seed aside), each holds its own seed and no two hold the same
weights; any other model stands alone, under a label unique among the models compared.
"""

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from regcli.core.config import TrainConfig
from regcli.core.errors import RegcliError
from regcli.core.tables import render
from regcli.store.checkpoints import checkpoint_config, load_checkpoint, model_from_checkpoint
from regcli.store.layout import checkpoint_path, is_seed_member, model_label
from regcli.store.records import load_metrics
from regcli.store.seed_groups import Member, check_group, check_seed_folder, weights_sha256
from regcli.studies.stats import Difference, SeedStats, holm_adjusted, seed_stats, verdict
from regcli.studies.weights import NEAR_ZERO, near_zero_share, weight_stats

README_SECTION = ("results-table", "regcli report")  # the README's generated results tables
NOT_IN_JSON = ("history", "group_path", "weights_sha256")


@dataclass(frozen=True)
class ModelRow:
    """One model of the comparison (accuracies and shares in %), read from its folder."""

    model: str  # its label, unique among the models compared
    group: str  # <name> for models/<name>/seed-<k>, else the label itself
    group_path: str  # the folder that holds a seed's group (a lone model's own folder)
    seeded: bool
    config: TrainConfig
    weights_sha256: str
    mode: str
    parameters: int
    l1: float
    weight_decay: float
    final_test_accuracy: float
    best_test_accuracy: float
    best_epoch: int
    final_train_accuracy: float
    gap: float  # final train minus final test accuracy, in points
    weight_l1_norm: float
    near_zero_share: float
    history: list[dict]  # metrics.json's epochs

    def as_json(self) -> dict:
        """The row as `compare --json` prints it (no history, folder or digest)."""
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_IN_JSON}
        return {**plain, "config": self.config.as_dict()}  # "config" keeps its place


@dataclass(frozen=True)
class SeedGroup:
    """A group of two or more seeds: final test accuracy (%) and weights over its seeds."""

    group: str
    accuracy: SeedStats
    weight_l1_norm: SeedStats
    near_zero_share: SeedStats
    versus_none: Difference | None  # None for the unregularized group itself, or no such group

    def as_json(self) -> dict:
        out = {
            "group": self.group,
            "seeds": self.accuracy.n,
            "mean": self.accuracy.mean,
            "std": self.accuracy.std,
            "min": self.accuracy.min,
            "max": self.accuracy.max,
            "weight_l1_norm": self.weight_l1_norm.mean,
            "near_zero_share": self.near_zero_share.mean,
            "versus_none": verdict(self.versus_none, absent=""),
        }
        if self.versus_none is not None:
            out["difference"] = self.versus_none.estimate
            out["half_width"] = self.versus_none.half_width
        return out


@dataclass(frozen=True)
class Band:
    """A curve per epoch: a seed group's mean with its lowest and highest seed."""

    mean: list[float]
    low: list[float]
    high: list[float]


@dataclass(frozen=True)
class Series:
    """One line of plots.compare_figure (a seed group's: a band)."""

    label: str
    group: str
    seeds: int
    epochs: list[int]
    accuracy: Band  # test accuracy, %
    loss: Band  # test loss


COLUMNS = (  # header, the row's text
    ("model", lambda r: r.model),
    ("params", lambda r: f"{r.parameters:,}"),
    ("l1", lambda r: f"{r.l1:g}"),
    ("weight decay", lambda r: f"{r.weight_decay:g}"),
    ("final test acc %", lambda r: f"{r.final_test_accuracy:.2f}"),
    ("best test acc % (epoch)", lambda r: f"{r.best_test_accuracy:.2f} ({r.best_epoch})"),
    ("final train acc %", lambda r: f"{r.final_train_accuracy:.2f}"),
    ("train-test gap (points)", lambda r: f"{r.gap:+.2f}"),
    ("weight L1 norm", lambda r: f"{r.weight_l1_norm:.1f}"),
    (f"near-zero weights % (<{NEAR_ZERO:g})", lambda r: f"{r.near_zero_share:.2f}"),
)
SEED_COLUMNS = (  # header, the group's text
    ("variant", lambda g: g.group),
    ("seeds", lambda g: str(g.accuracy.n)),
    ("final test acc % (mean +- std)", lambda g: f"{g.accuracy.mean:.3f} +- {g.accuracy.std:.3f}"),
    ("min", lambda g: f"{g.accuracy.min:.2f}"),
    ("max", lambda g: f"{g.accuracy.max:.2f}"),
    ("vs none (95% interval; Holm-adjusted p)", lambda g: verdict(g.versus_none)),
    ("weight L1 norm (mean)", lambda g: f"{g.weight_l1_norm.mean:.1f}"),
    (f"near-zero weights % (<{NEAR_ZERO:g}, mean)", lambda g: f"{g.near_zero_share.mean:.2f}"),
)


def summarize(model_dir: Path, label: str | None = None) -> ModelRow:
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
    return ModelRow(
        model=label,
        group=label.rsplit("/", 1)[0] if seeded else label,
        group_path=str(Path(model_dir).resolve().parent if seeded else model_dir),
        seeded=seeded,
        config=config,
        weights_sha256=weights_sha256(payload["state_dict"]),
        mode=config.mode,
        parameters=payload["parameters"],
        l1=config.l1,
        weight_decay=config.weight_decay,
        final_test_accuracy=100 * final["test_accuracy"],
        best_test_accuracy=100 * best["test_accuracy"],
        best_epoch=best["epoch"],
        final_train_accuracy=100 * final["train_accuracy"],
        gap=100 * (final["train_accuracy"] - final["test_accuracy"]),
        weight_l1_norm=weights["l1_norm"],
        near_zero_share=near_zero_share(weights),
        history=history,
    )


def groups(rows: list[ModelRow]) -> dict[str, list[ModelRow]]:
    """The seeds of <name>/seed-<k> form the group "<name> seeds"; any other model is alone
    (models/<name>/model.pt itself is not one of the seeds). A group whose members differ in
    configuration (the seed aside) is refused, not averaged."""
    grouped: dict[str, list[ModelRow]] = {}
    for row in rows:
        grouped.setdefault(f"{row.group_path} seeds" if row.seeded else row.model, []).append(row)
    for members in grouped.values():
        group = [Member(Path(m.model), m.config, m.weights_sha256) for m in members]
        check_group(group, f"seed group {members[0].group}")
    return grouped


def seed_summary(rows: list[ModelRow]) -> list[SeedGroup]:
    """Per group of two or more seeds: final test accuracy mean, spread, and the difference
    from the (first) unregularized group with its 95% interval (paired where the seeds are the
    same), Holm-adjusted over the groups compared."""
    seeded = [members for members in groups(rows).values() if len(members) > 1]
    finals = [
        seed_stats([m.final_test_accuracy for m in ms], seeds=[m.config.seed for m in ms])
        for ms in seeded
    ]
    none = next((i for i, members in enumerate(seeded) if members[0].mode == "none"), None)
    versus = holm_adjusted(
        [None if none in (None, i) else accuracy.versus(finals[none]) for i, accuracy in
         enumerate(finals)]
    )  # fmt: skip
    return [
        SeedGroup(
            group=members[0].group,
            accuracy=accuracy,
            weight_l1_norm=seed_stats([m.weight_l1_norm for m in members]),
            near_zero_share=seed_stats([m.near_zero_share for m in members]),
            versus_none=difference,
        )
        for members, accuracy, difference in zip(seeded, finals, versus, strict=True)
    ]


def band(curves: list[list[float]]) -> Band:
    array = np.array(curves)
    return Band(array.mean(0).tolist(), array.min(0).tolist(), array.max(0).tolist())


def series(rows: list[ModelRow]) -> list[Series]:
    """Per group, its accuracy and loss per epoch (seed groups: mean, min and max), for
    plots.compare_figure."""
    out = []
    for name, members in groups(rows).items():
        first, seeds = members[0], len(members)
        out.append(
            Series(
                label=name if seeds == 1 else f"{first.group} ({seeds} seeds)",
                group=first.group,
                seeds=seeds,
                epochs=[r["epoch"] for r in first.history],
                accuracy=band([[100 * r["test_accuracy"] for r in m.history] for m in members]),
                loss=band([[r["test_loss"] for r in m.history] for m in members]),
            )
        )
    return out


def table(columns: tuple, items: list, markdown: bool) -> str:
    body = [[text(item) for _, text in columns] for item in items]
    return render([header for header, _ in columns], body, markdown=markdown)


def seed_tables(rows: list[ModelRow], markdown: bool) -> list[str]:
    """The seed groups' table, if the rows hold any group of two or more seeds."""
    if not any(len(m) > 1 for m in groups(rows).values()):
        return []
    return [table(SEED_COLUMNS, seed_summary(rows), markdown)]


def comparison_tables(rows: list[ModelRow], markdown: bool) -> str:
    """Every model, then the seed groups (if any), as text or Markdown."""
    return "\n\n".join([table(COLUMNS, rows, markdown), *seed_tables(rows, markdown)])


def results_markdown(rows: list[ModelRow]) -> str:
    """The README's results: the single runs, then the seed groups (if any)."""
    singles = [r for r in rows if not r.seeded]
    parts = [table(COLUMNS, singles, markdown=True)] if singles else []
    return "\n\n".join([*parts, *seed_tables(rows, markdown=True)])


DATA_FIELDS = ("limit_train", "train_size", "val_size", "limit_test")  # which images a run saw


def data_differences(rows: list[ModelRow]) -> str | None:
    """A sentence naming the data settings in which the compared runs differ (None if they
    agree): their accuracies were measured after training, or testing, on other images."""
    parts = []
    for name in DATA_FIELDS:
        by_value: dict[str, list[str]] = {}
        for row in rows:
            value = getattr(row.config, name)
            names = by_value.setdefault("all" if value is None else f"{value:,}", [])
            if row.group not in names:  # a seed group once, by its name
                names.append(row.group)
        if len(by_value) > 1:
            shown = "; ".join(
                f"{value} ({', '.join(models)})" for value, models in by_value.items()
            )
            parts.append(f"{name}: {shown}")
    if not parts:
        return None
    return "these runs differ in the data they trained or were tested on: " + " | ".join(parts)


def as_json(rows: list[ModelRow]) -> dict:
    """Everything `compare` shows, as plain data."""
    return {
        "models": [r.as_json() for r in rows],
        "seed_groups": [g.as_json() for g in seed_summary(rows)],
        "data_differences": data_differences(rows),
    }
