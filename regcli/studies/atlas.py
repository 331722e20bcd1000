"""The regularization atlas: training-set size x strength, read back from a sweep's size folders.

An atlas is a sweep run with --train-sizes: <sweep>/size-<n>/<cell>/seed-<k>/, each size folder a
strength path of its own (strength_path.read_cells reads it). Per size and cell: final test
accuracy, validation accuracy (on the run's held-out split) and clean training accuracy over the
seeds; the train-test gap; the difference from none at the same size, seed by seed (seed k has
the same subset, initial weights and data order in every cell of its size), Holm-adjusted over
all the atlas's comparisons. Per size and penalty a strength is recommended by the
one-standard-error rule on validation accuracy alone; only then is its test accuracy looked up.
The committed path (all 60,000 images) can join as one more size, its differing settings said.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from regcli.core.config import TrainConfig, differences
from regcli.core.errors import RegcliError
from regcli.core.text import natural_key
from regcli.store.layout import parse_size_folder, real_dir
from regcli.studies.path import CellFolder, Penalty, Seed, read_path
from regcli.studies.stats import (
    Difference,
    SeedStats,
    holm_adjusted,
    one_standard_error,
    seed_stats,
)

PENALTIES = (Penalty.L1, Penalty.L2)  # the two paths of every size
SHARED_IGNORED = ("l1", "weight_decay", "seed", "train_size")  # what may differ across an atlas


@dataclass(frozen=True)
class AtlasCell:
    """One cell of one size: what became of its seeds, and their statistics (in %)."""

    size: int  # training images per pass
    cell: str
    penalty: Penalty
    strength: float  # along its path; 0 for none
    seeds: int
    diverged: int
    test: SeedStats | None = None  # final test accuracy
    val: SeedStats | None = None  # final validation accuracy; None without a split
    train: SeedStats | None = None  # final clean training accuracy; None when not measured
    versus_none: Difference | None = None  # test accuracy against none at this size

    @property
    def gap(self) -> float | None:
        """Clean training accuracy minus test accuracy (seed means), in points."""
        return None if self.train is None or self.test is None else self.train.mean - self.test.mean


@dataclass(frozen=True)
class Recommendation:
    """The strength the validation split chooses for one penalty at one size (0: none)."""

    size: int
    penalty: Penalty
    strength: float
    candidates: int  # strengths it chose among, none included
    versus_none: Difference | None  # the chosen cell's test accuracy against none's


@dataclass(frozen=True)
class Atlas:
    cells: list[AtlasCell]
    recommendations: list[Recommendation]
    settings: TrainConfig  # what every cell shares (its smallest size's none, seed 0)
    joined: dict[int, str]  # size -> how a joined path's settings differ from the atlas's
    folders: list[Path]  # every seed folder read, for the run records

    @property
    def sizes(self) -> list[int]:
        return sorted({c.size for c in self.cells})

    def at(self, size: int, penalty: Penalty) -> list[AtlasCell]:
        """A size's path for one penalty, none first, by strength."""
        chosen = [c for c in self.cells if c.size == size and c.penalty in (Penalty.NONE, penalty)]
        return sorted(chosen, key=lambda c: c.strength)

    def recommended(self, size: int, penalty: Penalty) -> Recommendation | None:
        found = (r for r in self.recommendations if (r.size, r.penalty) == (size, penalty))
        return next(found, None)


def size_folders(sweep_dir: Path) -> list[tuple[int, Path]]:
    """An atlas's size folders (real folders named size-<n>), smallest first."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RegcliError(
            f"no atlas at {sweep_dir}; run `make atlas` or `regcli sweep --train-sizes`"
        )
    found = []
    for folder in sorted(sweep_dir.iterdir(), key=natural_key):
        size = parse_size_folder(folder.name)
        if size is not None and real_dir(folder):
            found.append((size, folder))
    return found


def is_atlas(sweep_dir: Path) -> bool:
    return Path(sweep_dir).is_dir() and bool(size_folders(sweep_dir))


def final(member: Seed, key: str) -> float | None:
    """A finished seed's last value of `key`, in % (None when diverged, missing, unmeasured)."""
    if member.model is None:
        return None
    value = member.metrics["epochs"][-1].get(key)
    return None if value is None else 100 * value


def stats_of(members: list[Seed], key: str) -> SeedStats | None:
    pairs = [(m.config.seed, final(m, key)) for m in members]
    pairs = [(seed, value) for seed, value in pairs if value is not None]
    if not pairs:
        return None
    return seed_stats([v for _, v in pairs], seeds=[s for s, _ in pairs])


def summarize(size: int, cell: CellFolder, members: list[Seed]) -> AtlasCell:
    first = members[0].config
    if (first.l1, first.weight_decay) != (cell.l1, cell.weight_decay):
        raise RegcliError(f"cell {cell.name}: its name and its models' strengths disagree")
    return AtlasCell(
        size=size,
        cell=cell.name,
        penalty=cell.path,
        strength=cell.strength,
        seeds=len(members),
        diverged=sum(1 for m in members if m.diverged),
        test=stats_of(members, "test_accuracy"),
        val=stats_of(members, "val_accuracy"),
        train=stats_of(members, "clean_train_accuracy"),
    )


def compared(cells: list[AtlasCell]) -> list[AtlasCell]:
    """Each cell's test accuracy against none's at its size (paired where the seeds agree),
    then Holm over every comparison of the atlas: one study."""
    nones = {c.size: c.test for c in cells if c.penalty is Penalty.NONE}
    out = []
    for c in cells:
        base = nones.get(c.size)
        ok = c.penalty in PENALTIES and c.test is not None and base is not None
        out.append(replace(c, versus_none=c.test.versus(base) if ok else None))
    adjusted = holm_adjusted([c.versus_none for c in out])
    return [replace(c, versus_none=d) for c, d in zip(out, adjusted, strict=True)]


def recommend(cells: list[AtlasCell]) -> list[Recommendation]:
    """Per size and penalty, the one-standard-error choice among none and the path's
    strengths, on validation accuracy only, among the cells where no seed diverged (a size
    without a validation split: no choice)."""
    out = []
    for size in sorted({c.size for c in cells}):
        for penalty in PENALTIES:
            along = [  # a cell where a seed diverged is judged on survivors: never chosen
                c
                for c in cells
                if c.size == size
                and c.penalty in (Penalty.NONE, penalty)
                and c.val is not None
                and c.diverged == 0
            ]
            if not any(c.penalty is penalty for c in along):
                continue
            strength = one_standard_error([(c.strength, c.val) for c in along])
            chosen = next(c for c in along if c.strength == strength)
            out.append(Recommendation(size, penalty, strength, len(along), chosen.versus_none))
    return out


def read_atlas(sweep_dir: Path, join: Path | None = None) -> Atlas:
    """The atlas under sweep_dir; `join`: a path trained on every image (the committed
    sweep) added as one more size, its settings compared with the atlas's."""
    folders = size_folders(sweep_dir)
    if not folders:
        raise RegcliError(f"{sweep_dir}: no size-<n> folders; train it with --train-sizes")
    cells, settings, seen, joined = [], None, [], {}
    for size, folder in folders:
        read = read_path(folder, f"atlas {folder}", cells=f"atlas {folder}")
        config = read[0][1][0].config
        if config.train_images != size:
            raise RegcliError(f"{folder}: its models train on {config.train_images} images")
        settings = settings or config
        changes = differences(settings, config, ignore=SHARED_IGNORED)
        if changes:
            raise RegcliError(
                f"atlas {sweep_dir} mixes configurations: {folder} differs in {changes[0]}"
            )
        cells += [summarize(size, cell, members) for cell, members in read]
        seen += [m.dir for _, members in read for m in members]
    if join is not None and Path(join).is_dir():
        read = read_path(Path(join), f"sweep {join}", cells=f"sweep {join}")
        config = read[0][1][0].config
        size = config.train_images
        if size in {s for s, _ in folders}:
            raise RegcliError(f"{join} trains on {size} images, a size the atlas already has")
        joined[size] = "; ".join(differences(config, settings, ignore=SHARED_IGNORED)) or ""
        cells += [summarize(size, cell, members) for cell, members in read]
    cells = compared(cells)
    return Atlas(cells, recommend(cells), replace(settings, seed=0), joined, seen)
