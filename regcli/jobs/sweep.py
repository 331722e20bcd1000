"""`regcli sweep`: a grid of strengths x seeds, each an ordinary model folder, trained as groups.

The grid: the L1 path (weight decay 0) and the L2 path (l1 0) by default, or every combination
with --grid product; the unregularized cell is always there (it is the baseline every point is
compared with) and shared by both paths. Cells live in <models-dir>/<name>/<cell>/seed-<k>/.
Finished cells of the identical configuration are reused, interrupted ones resumed, and a cell
whose saved configuration differs is an error naming the difference. A cell that diverges is a
result: it is recorded as diverged and drawn so. No per-model figures are written.
"""

import math
from dataclasses import dataclass, replace
from pathlib import Path

from regcli.core.config import GRID_DEFAULTS, MAX_STRENGTH, Grid, RunOptions, TrainConfig
from regcli.core.errors import RegcliError, UsageError
from regcli.core.events import Reporter
from regcli.core.tables import clock, render
from regcli.jobs.pool import processes_for
from regcli.jobs.runner import Done, train_job
from regcli.jobs.runs import MAX_SEEDS, Action, Request, member_dir, plan_run
from regcli.store.layout import cell_name, parse_cell, size_folder
from regcli.store.settings import check_keys, config_toml, layered, shown

# Training throughput (images per second per model) used to estimate a sweep's time before any
# of its models exist; a sweep's own finished models give a better estimate once there are some.
# (cpu: `make bench` on a 2-core CPU, one model at a time; cuda: 20 models at once on an H200;
# mps: not measured, a guess)
ESTIMATED_IMAGES_PER_SECOND = {"cpu": 3_000, "mps": 5_000, "cuda": 400_000}
MAX_POINTS = 100  # strengths in one option (ranges and lists together); more is a typo
MAX_CELLS = 500  # cells in one grid (the committed path has 14); counted before anything is built
MAX_MODELS = 5_000  # cells x seeds in one sweep (the committed path trains 70)


def parse_strengths(text: str, option: str) -> list[float]:
    """'0,1e-5,1e-4' or a log-spaced range 'low:high:count' (e.g. 1e-6:1e-3:7, rounded to
    3 significant digits); every value finite and >= 0."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) > MAX_POINTS:
        raise UsageError(f"{option}: {len(parts)} strengths, more than {MAX_POINTS} in one sweep")
    values = []
    for part in parts:
        try:
            if ":" in part:
                low, high, count = part.split(":")
                low, high, count = float(low), float(high), int(count)
                if not (0 < low <= high and 1 <= count <= MAX_POINTS):
                    raise ValueError
                exponents = [
                    math.log10(low) + i * (math.log10(high) - math.log10(low)) / max(count - 1, 1)
                    for i in range(count)
                ]
                values += [float(f"{10**e:.3g}") for e in exponents]
            else:
                values.append(float(part))
        except (ValueError, ArithmeticError):
            raise UsageError(
                f"{option} {text!r}: give strengths like 0,1e-5,1e-4 or a range like 1e-6:1e-3:7 "
                f"(low <= high, 1..{MAX_POINTS} points)"
            ) from None
    if not values or not all(math.isfinite(v) and 0 <= v <= MAX_STRENGTH for v in values):
        raise UsageError(
            f"{option} {text!r}: every strength must be a finite number in [0, {MAX_STRENGTH:g}]"
        )
    if len(set(values)) > MAX_POINTS:
        raise UsageError(
            f"{option}: {len(set(values))} strengths, more than {MAX_POINTS} in one sweep"
        )
    return sorted(set(values))


def count_cells(
    l1s: list[float], weight_decays: list[float], grid: str, seeds: int, sizes: int = 1
) -> int:
    """How many cells the grid has (per training-set size), refused (before anything is
    built) beyond the caps: MAX_CELLS cell folders over all sizes, MAX_MODELS models."""
    a, b = len({0.0, *l1s}), len({0.0, *weight_decays})
    cells = a * b if grid == Grid.product else a + b - 1
    if cells * sizes > MAX_CELLS:
        per = f" x {sizes} training-set sizes = {cells * sizes:,}" if sizes > 1 else ""
        raise UsageError(
            f"the {grid} grid has {cells:,} cells{per}, more than the {MAX_CELLS} one sweep may "
            "have; give fewer strengths or sizes (or --grid paths)"
        )
    cells *= sizes
    if cells * seeds > MAX_MODELS:
        raise UsageError(
            f"{cells:,} cells x {seeds:,} seeds = {cells * seeds:,} models, more than the "
            f"{MAX_MODELS:,} one sweep may train; give fewer strengths or seeds"
        )
    return cells


def grid_cells(
    l1s: list[float], weight_decays: list[float], grid: str
) -> list[tuple[float, float]]:
    """The (l1, weight decay) pairs of the grid, the unregularized one first."""
    count_cells(l1s, weight_decays, grid, 1)
    l1s, weight_decays = sorted({0.0, *l1s}), sorted({0.0, *weight_decays})
    if grid == Grid.product:
        pairs = [(a, b) for a in l1s for b in weight_decays]
    else:
        pairs = [(a, 0.0) for a in l1s] + [(0.0, b) for b in weight_decays if b > 0]
    return sorted(set(pairs), key=lambda p: (p[0] > 0 and p[1] > 0, p[1] > 0, p[0], p[1]))


def sweep_requests(
    base: TrainConfig,
    name: str,
    cells: list[tuple[float, float]],
    seeds: int,
    sizes: tuple[int, ...] = (),
) -> list[Request]:
    """One seed group per cell: <name>/<cell>/seed-<k>, k = 0..seeds-1; with training-set
    sizes, one path per size: <name>/size-<n>/<cell>/seed-<k>."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be in 1..{MAX_SEEDS}, got {seeds}")
    bases = [(base, name)]
    if sizes:
        sized = [replace(base, train_size=size) for size in sizes]
        bases = [(b, f"{name}/{size_folder(b.train_images)}") for b in sized]
    return [
        Request(
            replace(config, l1=l1, weight_decay=wd, seed=seed),
            f"{folder}/{cell_name(l1, wd)}",
            seeded=True,
        )
        for config, folder in bases
        for l1, wd in cells
        for seed in range(seeds)
    ]


def parse_sizes(text: str) -> tuple[int, ...]:
    """--train-sizes '500,1000,60000': distinct whole numbers >= 1, smallest first."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    plain = all(p.isascii() and p.isdigit() and int(p) >= 1 for p in parts)
    if not parts or len(parts) > MAX_POINTS or not plain:
        raise UsageError(
            f"--train-sizes {text!r}: give training-set sizes like 500,1000,5000 "
            f"(whole numbers >= 1, at most {MAX_POINTS})"
        )
    return tuple(sorted({int(p) for p in parts}))


def estimate_seconds(
    config: TrainConfig, models: int, device: str, measured: float | None
) -> float:
    """Rough training time of `models` runs: images seen / images per second per model."""
    per_model = config.passes_per_epoch * config.train_images + config.test_images
    rate = measured or ESTIMATED_IMAGES_PER_SECOND.get(device, 2_700)
    return models * config.epochs * per_model / rate


def measured_rate(outcomes_dirs: list[Path]) -> float | None:
    """Images per second per model, from finished models' run records (if any recorded it)."""
    from regcli.store.records import load_metrics

    rates = []
    for model_dir in outcomes_dirs:
        try:
            metrics = load_metrics(model_dir)
        except RegcliError:
            continue
        run = metrics.get("run") if isinstance(metrics.get("run"), dict) else {}
        group = run.get("group") if isinstance(run.get("group"), dict) else {}
        seconds, size = run.get("seconds"), group.get("size", 1)
        plain = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (seconds, size))
        if plain and math.isfinite(seconds) and seconds > 0 and 1 <= size <= 10_000:
            settings = TrainConfig.from_dict(metrics["config"])
            per_epoch = settings.passes_per_epoch * settings.train_images + settings.test_images
            images = len(metrics["epochs"]) * per_epoch
            rates.append(images * size / seconds)
    return sum(rates) / len(rates) if rates else None


def preview(job: "SweepJob", options: RunOptions) -> dict:
    """What a sweep would do, without locking or writing anything: per cell how many seeds are
    reused, resumed or trained, its training length (the fair-length rule), and an estimate of
    the training time."""
    from regcli.train.devices import resolve_device

    device = resolve_device(options.device).type
    cells: dict[str, dict] = {}
    finished, pending = [], []
    for request in job.requests():
        model_dir = member_dir(options.models_dir, request)
        plan = plan_run(model_dir, request.config, options.existing)
        cell = request.name.split("/", 1)[1]
        l1, weight_decay = parse_cell(cell.rsplit("/", 1)[-1])
        entry = cells.setdefault(cell, cell_entry(cell, l1, weight_decay, request.config))
        entry[plan.action] += 1
        if plan.action == Action.reuse:
            finished.append(model_dir)
        else:
            pending.append(request.config)
    rate = measured_rate(finished)
    seconds = sum(estimate_seconds(config, 1, device, rate) for config in pending)
    steps = sum(c.epochs * c.steps_per_epoch for c in pending)  # as the runner decides
    processes = processes_for(device, options, len(pending), steps)
    return {
        "folder": str(Path(options.models_dir) / job.name),
        "seeds": job.seeds,
        "train_sizes": list(job.train_sizes),
        "cells": list(cells.values()),
        "models": sum(c["reuse"] + c["resume"] + c["train"] for c in cells.values()),
        "reuse": sum(c["reuse"] for c in cells.values()),
        "resume": sum(c["resume"] for c in cells.values()),
        "train": sum(c["train"] for c in cells.values()),
        "estimate_seconds": seconds,
        "processes": processes,  # side by side on a CPU (regcli/jobs/pool.py)
        "estimate_wall_seconds": seconds / processes,
        "estimate_from": "this sweep's finished models" if rate else f"a typical {device} rate",
    }


def cell_entry(cell: str, l1: float, weight_decay: float, config: TrainConfig) -> dict:
    return {
        "cell": cell,
        "l1": l1,
        "weight_decay": weight_decay,
        "train_images": config.train_images,
        "epochs": config.epochs,
        "passes_per_epoch": config.passes_per_epoch,
        "steps": config.epochs * config.steps_per_epoch,
        "reuse": 0,
        "resume": 0,
        "train": 0,
    }


def train(job: "SweepJob", options: RunOptions, reporter: Reporter) -> list:
    """Train the grid's pending models (as groups on a GPU), reusing and resuming the rest; the
    reporter hears of each cell as its last seed is saved or reused."""
    return train_job(job.requests(), options, reporter)


GRID_SETTINGS = ("l1", "weight_decay", "grid", "seeds", "train_sizes")  # a [sweep] table


def resolve_grid(typed: dict, table: dict, *, defaults: dict, source: str):
    """The grid from the command line (typed options), else the config file's [sweep] table,
    else the defaults: (l1 strengths, weight decay strengths, grid, seeds)."""
    check_keys(table, GRID_SETTINGS, f"{source} [sweep]")
    from_file = {
        key: ",".join(map(str, value))
        if key in ("l1", "weight_decay", "train_sizes") and isinstance(value, list)
        else value
        for key, value in table.items()
    }
    chosen = layered(defaults, from_file, typed)
    l1s = parse_strengths(str(chosen["l1"]), "--l1")
    decays = parse_strengths(str(chosen["weight_decay"]), "--weight-decay")
    try:
        grid = Grid(chosen["grid"]).value
    except ValueError:
        raise UsageError(
            f"--grid must be one of {', '.join(Grid)}, got {chosen['grid']!r}"
        ) from None
    seeds = chosen["seeds"]
    if isinstance(seeds, bool) or not isinstance(seeds, int):
        raise UsageError(f"--seeds must be a whole number, got {seeds!r}")
    if not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be in 1..{MAX_SEEDS}, got {seeds}")
    given = chosen.get("train_sizes")
    sizes = () if given is None else parse_sizes(given)  # given but empty: an error
    count_cells(l1s, decays, grid, seeds, max(1, len(sizes)))
    return l1s, decays, grid, seeds, sizes


def preview_text(plan: dict) -> str:
    rows = [
        [
            c["cell"],
            f"{c['l1']:g}",
            f"{c['weight_decay']:g}",
            f"{c['train_images']:,}",
            f"{c['epochs']} x {c['passes_per_epoch']}",
            f"{c['steps']:,}",
            str(c["reuse"]),
            str(c["resume"]),
            str(c["train"]),
        ]
        for c in plan["cells"]
    ]
    headers = ["cell", "l1", "weight decay", "images", "epochs x passes", "steps"]
    table = render([*headers, "reuse", "resume", "train"], rows)
    sizes = f" x {len(plan['train_sizes'])} sizes" if plan["train_sizes"] else ""
    cells = len(plan["cells"]) // max(1, len(plan["train_sizes"]))
    wall = (
        f", {clock(plan['estimate_wall_seconds'])} from start to end in {plan['processes']} "
        "processes side by side"
        if plan["processes"] > 1
        else ""
    )
    return (
        f"{table}\n{plan['folder']}: {cells} cells{sizes} x {plan['seeds']} seeds = "
        f"{plan['models']} models: {plan['reuse']} reused, {plan['resume']} resumed, "
        f"{plan['train']} to train; about {clock(plan['estimate_seconds'])} of training{wall} "
        f"(estimated from {plan['estimate_from']}); an epoch is the fewest whole passes over "
        "a cell's images that reach --min-steps optimizer steps in all"
    )


@dataclass(frozen=True)
class SweepJob:
    """One sweep: its folder name, the settings every cell shares, and the grid."""

    name: str  # the sweep's folder under --models-dir
    base: TrainConfig  # every cell's settings but its strengths and seed
    l1s: tuple[float, ...]
    weight_decays: tuple[float, ...]
    grid: str  # a Grid
    seeds: int  # seeds 0..seeds-1 per cell
    train_sizes: tuple[int, ...] = ()  # one path per size (<name>/size-<n>/); () none

    def cells(self) -> list[tuple[float, float]]:
        return grid_cells(list(self.l1s), list(self.weight_decays), self.grid)

    def requests(self) -> list[Request]:
        return sweep_requests(self.base, self.name, self.cells(), self.seeds, self.train_sizes)

    def config_text(self) -> str:
        """`regcli sweep --print-config`: the training settings and the grid, as TOML."""
        shared = {
            k: v
            for k, v in shown(self.base.as_dict()).items()
            if k not in ("l1", "weight_decay", "seed", "train_size")
        }
        table = {
            "l1": list(self.l1s),
            "weight_decay": list(self.weight_decays),
            "grid": self.grid,
            "seeds": self.seeds,
            **({"train_sizes": list(self.train_sizes)} if self.train_sizes else {}),
        }
        text = config_toml(shared, {"sweep": table}, title="regcli sweep --config <this file>")
        return text.rstrip("\n")

    def summary_line(self, models_dir: Path, outcomes: list) -> str:
        diverged = sum(1 for o in outcomes if o.diverged)
        reused = sum(1 for o in outcomes if o.action == Done.reused)
        resumed = sum(1 for o in outcomes if o.action == Done.resumed)
        failed = sum(1 for o in outcomes if o.action == Done.failed)
        trained = len(outcomes) - reused - resumed - failed
        sizes = f" x {len(self.train_sizes)} sizes" if self.train_sizes else ""
        return (
            f"sweep {Path(models_dir) / self.name}: {len(self.cells())} cells{sizes} x "
            f"{self.seeds} "
            f"seeds: {trained} trained, {resumed} resumed, {reused} reused, {diverged} diverged "
            "(recorded as results)" + (f", {failed} failed" if failed else "")
        )


def plan(name: str, settings: dict, table: dict, typed: dict, source: str) -> SweepJob:
    """The sweep from its resolved settings, its config file's [sweep] table and the grid
    options typed on the command line (which win), checked and capped before anything is
    built."""
    l1s, decays, grid, seeds, sizes = resolve_grid(
        typed, table, defaults=GRID_DEFAULTS, source=source
    )
    base = TrainConfig.from_dict({**settings, "l1": 0.0, "weight_decay": 0.0}, "settings")
    for size in sizes:  # each size's settings checked before anything is built
        replace(base, train_size=size)
    return SweepJob(name, base, tuple(l1s), tuple(decays), grid, seeds, sizes)
