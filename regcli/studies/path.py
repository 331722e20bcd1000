"""Regularization paths: a sweep's cells read back from disk and checked, and per cell its seed
statistics (a `PathCell`), as data and as the path table.

A sweep lives in <models-dir>/<sweep>/<cell>/seed-<k>/, each an ordinary model folder; the
cell's name says its strengths (`l1-3e-05_wd-0`) and reads back to them. Per cell: final test
accuracy (seed mean, spread, 95% interval, and the paired interval against the unregularized cell:
seed k is seed k in every cell; Holm-adjusted over the path's comparisons),
the share of near-zero conv weights, their L1 norm, and accuracy after magnitude pruning (cached
beside each model, see weights.cached_pruned_accuracies). A cell folder must carry its canonical
name, its seeds must be real seed-<k> folders of seed k with distinct weights, and a finished
seed whose model.pt is gone is "missing", not "diverged".
"""

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from regcli.core.config import Penalty, TrainConfig, check_same_settings
from regcli.core.errors import RegcliError
from regcli.core.files import sha256_bytes
from regcli.core.tables import render
from regcli.core.text import natural_key
from regcli.store.checkpoints import (
    CHECKPOINT_FORMAT,
    checked_checkpoint,
    checkpoint_config,
    model_from_checkpoint,
    read_payload,
)
from regcli.store.layout import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    cell_name,
    is_seed_member,
    parse_cell,
    real_dir,
    seed_number,
)
from regcli.store.records import Status, load_metrics
from regcli.store.seed_groups import Member, check_group, check_seed_folder, weights_sha256
from regcli.studies.shift import compare_shifted, shifted_accuracies, shifted_tests
from regcli.studies.stats import Difference, SeedStats, holm_adjusted, mean, seed_stats, verdict
from regcli.studies.weights import (
    NEAR_ZERO,
    cached_pruned_accuracies,
    near_zero_share,
    weight_stats,
)

PATH_SPARSITIES = (0.5, 0.7, 0.9)  # shares of conv weights zeroed for the pruned-accuracy path
README_SECTION = ("path-table", "regcli report")


@dataclass(frozen=True)
class CellFolder:
    """A cell folder of a sweep: its strengths and its seeds' folders (finished or diverged)."""

    name: str
    l1: float
    weight_decay: float
    seeds: list[Path]
    unfinished: int  # seed folders neither finished nor diverged

    @property
    def path(self) -> Penalty:
        return Penalty.of(self.l1, self.weight_decay)

    @property
    def strength(self) -> float:
        """Its strength along its path (0 for the unregularized cell and for both at once)."""
        return {Penalty.L1: self.l1, Penalty.L2: self.weight_decay}.get(self.path, 0.0)


@dataclass(frozen=True)
class Seed:
    """One seed of a cell as it is on disk, checked; nothing is measured yet."""

    dir: Path
    config: TrainConfig
    metrics: dict
    diverged: bool
    model: torch.nn.Module | None = None  # None when diverged, or finished with model.pt gone
    sha256: str | None = None  # of its model.pt
    weights: str | None = None  # groups.weights_sha256 of its weights

    @property
    def missing(self) -> bool:
        return not self.diverged and self.model is None


@dataclass(frozen=True)
class SeedNumbers:
    """One seed's measurements (accuracies and shares in %)."""

    seed: int
    accuracy: float  # final test accuracy
    near_zero_share: float
    l1_norm: float
    pruned: dict[float, float]  # accuracy after zeroing each share in PATH_SPARSITIES
    shifted: dict[str, float] = field(default_factory=dict)  # accuracy per shifted test set


@dataclass(frozen=True)
class PathCell:
    """A cell of the path: its strengths, what became of its seeds, and their statistics."""

    cell: str
    l1: float
    weight_decay: float
    path: Penalty
    strength: float
    seeds: int
    unfinished: int
    diverged: int
    missing: int
    epochs: int
    accuracy: SeedStats | None = None  # final test accuracy; None when no seed has a model
    near_zero_share: SeedStats | None = None
    l1_norm: SeedStats | None = None
    pruned: dict[float, float] = field(default_factory=dict)  # seed mean per share zeroed
    versus_none: Difference | None = None  # accuracy against the unregularized cell's
    shifted: dict = field(default_factory=dict)  # shift -> robustness.ShiftedCell

    def as_json(self) -> dict:
        """The cell as `sweep --report --json` prints it."""
        out = {
            "cell": self.cell,
            "l1": self.l1,
            "weight_decay": self.weight_decay,
            "path": self.path.value,
            "strength": self.strength,
            "seeds": self.seeds,
            "unfinished": self.unfinished,
            "diverged": self.diverged,
            "missing": self.missing,
            "epochs": self.epochs,
            "accuracy": None,
        }
        if self.accuracy is None:
            return out
        for key, stats in self.quantities().items():
            out[key] = stats.mean
            out[f"{key}_min"], out[f"{key}_max"] = stats.min, stats.max
            out[f"{key}_std"], out[f"{key}_half_width"] = stats.std, stats.half_width
        out["pruned"] = {repr(s): value for s, value in self.pruned.items()}
        out["versus_none"] = verdict(self.versus_none)
        if self.versus_none is not None:
            out["difference"] = self.versus_none.estimate
            out["difference_half_width"] = none_if_nan(self.versus_none.half_width)
        return out

    def quantities(self) -> dict[str, SeedStats]:
        return {
            "accuracy": self.accuracy,
            "near_zero_share": self.near_zero_share,
            "l1_norm": self.l1_norm,
        }


def none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def cells_json(cells: list[PathCell]) -> list[dict]:
    """The cells as plain data, for `--json`."""
    return [c.as_json() for c in cells]


def read_cells(sweep_dir: Path) -> list[CellFolder]:
    """Every cell folder of a sweep with its seeds' folders (finished or diverged), in order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RegcliError(f"no sweep at {sweep_dir}; run `regcli sweep` first")
    cells = []
    for folder in sorted(sweep_dir.iterdir(), key=natural_key):
        strengths = parse_cell(folder.name) if real_dir(folder) else None  # never a link
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
            cells.append(CellFolder(folder.name, *strengths, seeds, len(all_seeds) - len(seeds)))
    if not cells:
        raise RegcliError(f"no finished cells under {sweep_dir}; run `regcli sweep` first")
    order = list(Penalty)
    return sorted(cells, key=lambda c: (order.index(c.path), c.l1, c.weight_decay))


def finished_or_diverged(folder: Path) -> bool:
    return (folder / CHECKPOINT_NAME).is_file() or (folder / METRICS_NAME).is_file()


def read_member(model_dir: Path) -> Seed:
    """One seed as it is on disk, checked: its config (seed k in seed-<k>), its status, and
    its checkpoint (agreeing with its metrics) if it has one. Nothing is measured yet."""
    metrics = load_metrics(model_dir)
    config = TrainConfig.from_dict(metrics["config"], str(model_dir / METRICS_NAME))
    check_seed_folder(model_dir, config)
    if metrics.get("status") == Status.diverged:
        return Seed(model_dir, config, metrics, diverged=True)
    path = model_dir / CHECKPOINT_NAME
    if not path.is_file():
        return Seed(model_dir, config, metrics, diverged=False)
    payload, raw = read_payload(path, CHECKPOINT_FORMAT)
    if checkpoint_config(checked_checkpoint(payload, path), path) != config:
        raise RegcliError(f"{model_dir}: model.pt and metrics.json disagree; train it again")
    model = model_from_checkpoint(payload, model_dir)
    digest = weights_sha256(payload["state_dict"])
    return Seed(model_dir, config, metrics, False, model, sha256_bytes(raw), digest)


def member_stats(
    member: Seed, test, *, backend: str, device: str, shifted: dict | None = None
) -> SeedNumbers | None:
    """One seed's numbers: final accuracy, weights, pruned accuracies and accuracies on the
    `shifted` test sets (both cached); a diverged or missing seed (finished, but its model.pt
    is gone) has none."""
    if member.model is None:
        return None
    test = test.head(member.config.limit_test)  # the test images it was measured on
    weights = weight_stats(member.model)
    pruned = cached_pruned_accuracies(
        member.dir, member.model, member.sha256, PATH_SPARSITIES, test, backend, device
    )
    under = shifted_accuracies(member.dir, member.sha256, shifted, backend) if shifted else {}
    return SeedNumbers(
        seed=member.config.seed,
        accuracy=100 * member.metrics["epochs"][-1]["test_accuracy"],
        near_zero_share=near_zero_share(weights),
        l1_norm=weights["l1_norm"],
        pruned=pruned,
        shifted=under,
    )


def summarize_cell(
    cell: CellFolder,
    members: list[Seed],
    numbers: list[SeedNumbers | None],
    baseline: SeedStats | None,
) -> PathCell:
    """A cell's seed statistics (and its difference from the unregularized cell's accuracy)."""
    first = members[0].config
    if (first.l1, first.weight_decay) != (cell.l1, cell.weight_decay):
        raise RegcliError(
            f"cell {cell.name}: its name says l1 {cell.l1:g}, weight decay "
            f"{cell.weight_decay:g}, its models were trained with l1 {first.l1:g}, weight "
            f"decay {first.weight_decay:g}"
        )
    good = [n for n in numbers if n is not None]
    missing = sum(1 for m in members if m.missing)
    counts = PathCell(
        cell=cell.name,
        l1=cell.l1,
        weight_decay=cell.weight_decay,
        path=cell.path,
        strength=cell.strength,
        seeds=len(members),
        unfinished=cell.unfinished,
        diverged=len(members) - len(good) - missing,
        missing=missing,
        epochs=first.epochs,
    )
    if not good:
        return counts
    accuracy = seed_stats([n.accuracy for n in good], seeds=[n.seed for n in good])
    compared = baseline is not None and cell.path is not Penalty.NONE
    return replace(
        counts,
        accuracy=accuracy,
        near_zero_share=seed_stats([n.near_zero_share for n in good]),
        l1_norm=seed_stats([n.l1_norm for n in good]),
        pruned={s: mean([n.pruned[s] for n in good]) for s in good[0].pruned},
        versus_none=accuracy.versus(baseline) if compared else None,
        shifted={
            shift: seed_stats([n.shifted[shift] for n in good], seeds=[n.seed for n in good])
            for shift in good[0].shifted
        },
    )


def read_path(folder: Path, what: str, cells: str = "cell") -> list[tuple[CellFolder, list[Seed]]]:
    """A path's cells with their seeds, every group checked (settings, seed folders, copies:
    each named `<cells> <cell>`), and the cells differing in their strengths only (`what`)."""
    read = [(cell, [read_member(d) for d in cell.seeds]) for cell in read_cells(folder)]
    for cell, members in read:
        check_group([Member(m.dir, m.config, m.weights) for m in members], f"{cells} {cell.name}")
    check_same_settings(
        [(cell.name, members[0].config) for cell, members in read],
        what,
        ignore=("l1", "weight_decay", "seed"),
    )
    return read


def path_stats(
    sweep_dir: Path,
    test,
    *,
    backend: str = "torch",
    device: str = "cpu",
    shifts: tuple[str, ...] = (),
    advance=lambda name="": None,
) -> list[PathCell]:
    """Every cell of the sweep, summarized; the unregularized cell is the baseline. With
    `shifts` (robustness.ROBUSTNESS_SHIFTS), each cell's accuracy under each shift too."""
    read = read_path(sweep_dir, f"sweep {sweep_dir}")  # checked before anything is measured
    measured = []
    limit = read[0][1][0].config.limit_test  # the cells share it (checked above)
    shifted = shifted_tests(test.head(limit), shifts) if shifts else None
    for cell, members in read:
        numbers = []
        for member in members:
            numbers.append(
                member_stats(member, test, backend=backend, device=device, shifted=shifted)
            )
            advance(f"{cell.name}/{member.dir.name}")
        measured.append((cell, members, numbers))
    base = next((n for c, _, n in measured if c.path is Penalty.NONE), [])
    good = [n for n in base if n is not None]
    baseline = (  # an unregularized cell whose every seed diverged: no baseline
        seed_stats([n.accuracy for n in good], seeds=[n.seed for n in good]) if good else None
    )
    cells = [summarize_cell(*cell, baseline) for cell in measured]
    adjusted = holm_adjusted([c.versus_none for c in cells])  # one study: Holm over its cells
    cells = [replace(c, versus_none=d) for c, d in zip(cells, adjusted, strict=True)]
    base_shifted = next((c.shifted for c in cells if c.path is Penalty.NONE), None)
    robust = compare_shifted(cells, base_shifted or None)  # their own study: Holm over them
    return [replace(c, shifted=r) for c, r in zip(cells, robust, strict=True)]


PATH_HEADERS = [
    "cell",
    "l1",
    "weight decay",
    "seeds",
    "final test acc % (mean +- std)",
    "vs none (95% interval; Holm-adjusted p)",
    f"near-zero % (<{NEAR_ZERO:g})",
    "weight L1 norm",
    *(f"acc % at {100 * s:g}% zeroed" for s in PATH_SPARSITIES),
]


def path_row(c: PathCell) -> list[str]:
    counts = (("diverged", c.diverged), ("missing", c.missing), ("unfinished", c.unfinished))
    notes = [f"{count} {what}" for what, count in counts if count]
    seeds = f"{c.seeds}" + (f" ({', '.join(notes)})" if notes else "")
    if c.accuracy is None:
        lost = "diverged" if c.diverged == c.seeds else "no model"
        numbers = [lost, *["-"] * (len(PATH_HEADERS) - 5)]
    else:
        numbers = [
            f"{c.accuracy.mean:.2f} +- {c.accuracy.std:.2f}",
            verdict(c.versus_none),
            f"{c.near_zero_share.mean:.2f}",
            f"{c.l1_norm.mean:.1f}",
            *(f"{c.pruned[s]:.2f}" for s in PATH_SPARSITIES),
        ]
    return [c.cell, f"{c.l1:g}", f"{c.weight_decay:g}", seeds, *numbers]


def path_table(cells: list[PathCell], markdown: bool = False) -> str:
    return render(PATH_HEADERS, [path_row(c) for c in cells], markdown=markdown)
