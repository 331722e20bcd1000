"""The pruning study (Han et al. 2015, on this network): test accuracy against the share of conv
weights pruned, with no retraining, one-shot retraining and iterative retraining, for the
unregularized network and one strength of each penalty, seed by seed.

Read from a folder of pruned runs (`make prune-study`: <pruned>/<cell>/seed-<k>, made by
`regcli prune --retrain`) and their sources, found by content: each pruned run's config names the
sha256 of its source's model.pt, looked up among the sweep's models (never by a folder name),
and must be that source's config pruned (jobs/pruned_runs.pruned_config). Without retraining,
each source's accuracy at each level is measured once and cached beside it. Seed k starts from the
same weights and data order in every cell, so every comparison is paired seed by seed: each
penalty against none, L1 against L2, and iterative against one-shot, at each level and mode,
all Holm-adjusted together as one study.
"""

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from regcli.core.config import RETRAIN_LR, TrainConfig, check_same_settings
from regcli.core.errors import RegcliError
from regcli.core.text import natural_key
from regcli.inference.backends import current_onnx_bytes
from regcli.inference.onnx_sizes import file_sizes, graph_of, sizes_with
from regcli.jobs.pruned_runs import pruned_config
from regcli.store.checkpoints import (
    checkpoint_config,
    load_checkpoint_with_hash,
    model_from_checkpoint,
)
from regcli.store.layout import (
    PRUNED_PATTERN,
    is_seed_member,
    parse_size_folder,
    pruned_cell_name,
    real_dir,
    seed_number,
)
from regcli.store.seed_groups import Member, check_group
from regcli.studies.path import Penalty, Seed, read_cells, read_member
from regcli.studies.stats import Difference, SeedStats, holm_adjusted, seed_stats
from regcli.studies.weights import cached_pruned_accuracies


class Mode(StrEnum):
    """How a pruned network was (or was not) retrained."""

    none = "no retraining"
    one_shot = "one-shot"  # pruned once to the level, then retrained
    iterative = "iterative"  # several prune-then-retrain steps to the level


@dataclass(frozen=True)
class Point:
    """One penalty's seeds at one level and mode (accuracy in %)."""

    penalty: Penalty
    mode: Mode
    sparsity: float
    accuracy: SeedStats
    zipped_kb: float | None = None  # mean zipped size of the pruned exports (retrained only)


@dataclass(frozen=True)
class Comparison:
    """first - second, seed by seed, at one level: two penalties in one mode, or two modes of
    one penalty."""

    first: Point
    second: Point
    difference: Difference

    @property
    def key(self) -> tuple:
        return key_of(self.first, self.second)


def key_of(first: Point, second: Point) -> tuple:
    return (first.penalty, first.mode, second.penalty, second.mode, first.sparsity)


@dataclass(frozen=True)
class PruningStudy:
    points: list[Point]
    comparisons: list[Comparison]
    strengths: dict[Penalty, float]  # the one strength of each penalty (none: 0)
    dense: dict[Penalty, SeedStats]  # the sources' own accuracy, nothing pruned
    dense_kb: dict[Penalty, float]  # the mean zipped size of the sources' ONNX exports
    retraining: dict[Mode, tuple[int, int, float]]  # epochs per step, steps, peak lr
    sparsities: list[float]
    folders: list[Path]  # every pruned run, for the run times
    settings: TrainConfig  # the sources' settings (their strengths and seeds aside)
    sweep: str  # the sweep folder the sources are in

    def point(self, penalty: Penalty, mode: Mode, sparsity: float) -> Point | None:
        found = (
            p for p in self.points if (p.penalty, p.mode, p.sparsity) == (penalty, mode, sparsity)
        )
        return next(found, None)

    def compared(self, first: Point | None, second: Point | None) -> Difference | None:
        if first is None or second is None:
            return None
        key = key_of(first, second)
        return next((c.difference for c in self.comparisons if c.key == key), None)


@dataclass(frozen=True)
class PrunedRun:
    seed: Seed
    source: Seed
    mode: Mode
    zipped_bytes: int


def pruned_cells(folder: Path) -> list[tuple[str, list[Path]]]:
    """The pruned cell folders (canonical names only) and their seed folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RegcliError(f"no pruned runs at {folder}; run `make prune-study` first")
    cells = []
    for cell in sorted(folder.iterdir(), key=natural_key):
        if parse_size_folder(cell.name) is not None:
            raise RegcliError(
                f"{cell}: pruned runs of a training subset; the study reads the path's (all of "
                "the training set): prune those under another --name"
            )
        match = PRUNED_PATTERN.fullmatch(cell.name) if real_dir(cell) else None
        if match is None:
            continue
        seeds = sorted((p for p in cell.iterdir() if is_seed_member(p)), key=seed_number)
        cells.append((cell.name, seeds))
    if not cells:
        raise RegcliError(f"no pruned cells under {folder}; run `make prune-study` first")
    return cells


def sources_by_sha256(sweep: Path) -> dict[str, Seed]:
    """Every finished model of the sweep, by the sha256 of its model.pt."""
    found = {}
    for cell in read_cells(sweep):
        for folder in cell.seeds:
            member = read_member(folder)
            if member.sha256 is not None:
                found[member.sha256] = member
    return found


def read_run(folder: Path, cell: str, sources: dict[str, Seed]) -> PrunedRun:
    """One pruned run, checked: finished, its folder names its config, its source is found by
    content, and its config is exactly its source's pruned."""
    member = read_member(folder)
    if member.model is None:
        raise RegcliError(f"{folder}: not finished (or diverged); run `make prune-study` again")
    c = member.config
    source = sources.get(c.pruned_from or "")
    if source is None:
        raise RegcliError(
            f"{folder}: its source (the model.pt of sha256 {str(c.pruned_from)[:12]}...) is not "
            "among the sweep's models; prune it again from them"
        )
    epochs = c.epochs // c.prune_steps
    expected = pruned_config(
        source.config,
        source.sha256,
        sparsity=c.sparsity,
        retrain=epochs,
        steps=c.prune_steps,
        lr=c.lr,
    )
    lr = None if c.lr == RETRAIN_LR else c.lr
    name = pruned_cell_name(c.l1, c.weight_decay, c.sparsity, epochs, c.prune_steps, lr)
    if expected != c or name != cell:
        raise RegcliError(f"{folder}: not a pruned run of its source's settings in cell {name}")
    mode = Mode.iterative if c.prune_steps > 1 else Mode.one_shot
    try:
        zipped = file_sizes(current_onnx_bytes(folder))["zipped_bytes"]
    except RegcliError as error:
        raise RegcliError(f"{error} (the study reports its zipped size)") from None
    return PrunedRun(member, source, mode, zipped)


def read_runs(pruned: Path, sweep: Path) -> list[PrunedRun]:
    sources = sources_by_sha256(sweep)
    runs = []
    for cell, seeds in pruned_cells(pruned):
        read = [read_run(folder, cell, sources) for folder in seeds]
        members = [Member(r.seed.dir, r.seed.config, r.seed.weights) for r in read]
        check_group(members, f"pruned cell {cell}", ignore=("seed", "pruned_from"))
        runs += read
    return runs


def one_value(values: set, what: str):
    if len(values) != 1:
        shown = ", ".join(sorted(map(str, values)))
        raise RegcliError(f"the pruning study mixes {what} ({shown}); one study, one setting")
    return next(iter(values))


def study_settings(runs: list[PrunedRun]) -> tuple[dict, dict]:
    """One strength per penalty, and one retraining per mode (else the study is refused)."""
    both = [r.seed.dir for r in runs if penalty_of(r) is Penalty.BOTH]
    if both:
        raise RegcliError(
            f"{both[0]}: pruned from a source with both penalties; the study compares none, L1 "
            "and L2 one at a time: prune it under another --name"
        )
    strengths = {}
    for penalty in (Penalty.NONE, Penalty.L1, Penalty.L2):
        of = {
            r.source.config.l1 + r.source.config.weight_decay
            for r in runs
            if penalty_of(r) is penalty
        }
        strengths[penalty] = one_value(of, f"{penalty.value} strengths") if of else None
    if strengths[Penalty.NONE] is None or not (strengths[Penalty.L1] or strengths[Penalty.L2]):
        raise RegcliError("the pruning study needs none and a penalty, pruned from the sweep")
    retraining = {}
    for mode in (Mode.one_shot, Mode.iterative):
        how = {
            (
                r.seed.config.epochs // r.seed.config.prune_steps,
                r.seed.config.prune_steps,
                r.seed.config.lr,
            )
            for r in runs
            if r.mode is mode
        }
        if how:
            retraining[mode] = one_value(how, f"{mode.value} retraining (epochs, steps, lr)")
    return {k: v for k, v in strengths.items() if v is not None}, retraining


def penalty_of(run: PrunedRun) -> Penalty:
    return Penalty.of(run.source.config.l1, run.source.config.weight_decay)


def final_accuracy(seed: Seed) -> float:
    return 100 * seed.metrics["epochs"][-1]["test_accuracy"]


def stats(values: list[tuple[int, float]]) -> SeedStats:
    """(seed, value) pairs as seed statistics that pair with another group's by seed."""
    ordered = sorted(values)
    return seed_stats([v for _, v in ordered], seeds=[k for k, _ in ordered])


def read_study(pruned: Path, sweep: Path, test, device: str = "cpu") -> PruningStudy:
    """The study from its pruned runs and their sources (see the module's docstring)."""
    runs = read_runs(pruned, sweep)
    strengths, retraining = study_settings(runs)
    sparsities = sorted({r.seed.config.sparsity for r in runs})
    sources = {r.source.sha256: r.source for r in runs}
    before = {
        sha: cached_pruned_accuracies(
            s.dir, s.model, sha, sparsities, test.head(s.config.limit_test), "torch", device
        )
        for sha, s in sources.items()
    }
    points, dense, dense_kb = [], {}, {}
    for penalty in strengths:
        mine = [
            s for s in sources.values() if Penalty.of(s.config.l1, s.config.weight_decay) is penalty
        ]
        dense[penalty] = stats([(s.config.seed, final_accuracy(s)) for s in mine])
        zipped = [sizes_with(graph_of(s.dir, s.model), {})["zipped_bytes"] for s in mine]
        dense_kb[penalty] = sum(zipped) / len(zipped) / 1000
        for level in sparsities:
            at = [(s.config.seed, before[s.sha256][level]) for s in mine]
            points.append(Point(penalty, Mode.none, level, stats(at)))
            for mode in retraining:
                here = [
                    r
                    for r in runs
                    if penalty_of(r) is penalty
                    and r.mode is mode
                    and r.seed.config.sparsity == level
                ]
                if here:
                    accuracy = stats([(r.seed.config.seed, final_accuracy(r.seed)) for r in here])
                    kb = sum(r.zipped_bytes for r in here) / len(here) / 1000
                    points.append(Point(penalty, mode, level, accuracy, kb))
    folders = [r.seed.dir for r in runs]
    ignore = ("l1", "weight_decay", "seed")
    check_same_settings(
        [(str(s.dir), s.config) for s in sources.values()], "the study's sources", ignore
    )
    settings = next(iter(sources.values())).config
    study = PruningStudy(
        points, [], strengths, dense, dense_kb, retraining, sparsities, folders, settings,
        Path(sweep).name,
    )  # fmt: skip
    return replace(study, comparisons=comparisons(study))


def comparisons(study: PruningStudy) -> list[Comparison]:
    """Each penalty against none and L1 against L2 in every mode, and iterative against
    one-shot for every penalty, at every level: paired by seed, Holm-adjusted together."""
    pairs = []
    modes = [Mode.none, *study.retraining]
    for level in study.sparsities:
        for mode in modes:
            at = {p: study.point(p, mode, level) for p in study.strengths}
            pairs += [(at[p], at[Penalty.NONE]) for p in (Penalty.L1, Penalty.L2) if p in at]
            if Penalty.L1 in at and Penalty.L2 in at:
                pairs.append((at[Penalty.L1], at[Penalty.L2]))
        for penalty in study.strengths:
            first = study.point(penalty, Mode.iterative, level)
            second = study.point(penalty, Mode.one_shot, level)
            if first is not None and second is not None:
                pairs.append((first, second))
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    differences = holm_adjusted([a.accuracy.versus(b.accuracy) for a, b in pairs])
    return [Comparison(a, b, d) for (a, b), d in zip(pairs, differences, strict=True)]


# --- one retrained pruned run against its source (`regcli retrain`'s table) ------------------

DENSE_SIZES: dict[str, dict] = {}  # a source model.pt's sha256 -> its dense ONNX sizes


def pruned_result(model_dir: Path, source: Path, test, label: str) -> dict:
    """One retrained pruned run against its source: accuracy pruned without retraining and
    after it, and the ONNX sizes (bytes, zipped) of its export and of the dense source."""
    payload, sha256 = load_checkpoint_with_hash(source)
    pruned = load_checkpoint_with_hash(model_dir)[0]
    config = checkpoint_config(pruned, model_dir)
    if config.pruned_from != sha256:
        raise RegcliError(f"{model_dir} was not pruned from {source}'s model.pt")
    model = model_from_checkpoint(payload, source)
    tested = test.head(config.limit_test)  # the images its accuracy was measured on
    before = cached_pruned_accuracies(
        source, model, sha256, [config.sparsity], tested, "torch", "cpu"
    )
    final = pruned["final"]["test_accuracy"]
    if sha256 not in DENSE_SIZES:  # one source, several levels: its export is sized once
        DENSE_SIZES[sha256] = sizes_with(graph_of(source, model), {})
    dense = DENSE_SIZES[sha256]
    return {
        "model": label,
        "source": str(source),
        "sparsity": config.sparsity,
        "steps": config.prune_steps,
        "retrain_epochs": config.epochs // config.prune_steps,
        "lr": config.lr,
        "pruned_accuracy": before[config.sparsity] / 100,
        "retrained_accuracy": final,
        **file_sizes(current_onnx_bytes(model_dir)),
        "dense_onnx_bytes": dense["onnx_bytes"],
        "dense_zipped_bytes": dense["zipped_bytes"],
    }
