"""A run on disk: which folder a run goes to, what that folder holds, whether it may be reused,
resumed or replaced, one writer per folder, and the listing of every run (`regcli runs`).

(What a folder holds, and the listing of every run, are listing.py's.) A model folder holds one
configuration. A finished (or diverged) run is reused, and an
interrupted one resumed, only when its saved TrainConfig equals the requested one; anything else
is refused naming the differing fields. Every folder a job writes to is locked (see locks.py) from
before it is inspected until the job is done. Training the pending runs is runner.py's job.
"""

import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from regcli.core.config import MODES, Existing, RunOptions, TrainConfig, differences
from regcli.core.errors import Locked, RegcliError, RegcliWarning, UsageError
from regcli.core.locks import locked
from regcli.store.checkpoints import checkpoint_config, load_checkpoint, load_run_state
from regcli.store.layout import CHECKPOINT_NAME, METRICS_NAME, SEED_PREFIX, check_name
from regcli.store.listing import State, folder_state, relative
from regcli.store.records import load_metrics

MAX_SEEDS = 1_000  # seeds per configuration; more is a typo, not a study


class Action(StrEnum):
    """What a job does with one requested run."""

    reuse = "reuse"  # finished or diverged with the identical config: kept as it is
    resume = "resume"  # interrupted with the identical config: continued from last.pt
    train = "train"  # trained from scratch


def folder_config(model_dir: Path, state: State) -> tuple[TrainConfig, dict | None]:
    """The config a folder's run was made with (and, if interrupted, its last.pt content)."""
    if state == State.interrupted:
        last = load_run_state(model_dir)
        return last["config"], last
    if (model_dir / METRICS_NAME).is_file():
        path = model_dir / METRICS_NAME
        return TrainConfig.from_dict(load_metrics(model_dir)["config"], str(path)), None
    return checkpoint_config(load_checkpoint(model_dir), model_dir / CHECKPOINT_NAME), None


@dataclass
class Plan:
    """What happens to one requested run: reuse, resume or train (into model_dir)."""

    model_dir: Path
    config: TrainConfig
    action: Action
    last: dict | None = None  # last.pt content, for Action.resume
    previous: State = State.empty  # the folder's state before this job
    start: Path | None = None  # a pruned run's source model folder (Request.start)


def mismatch(model_dir: Path, saved: TrainConfig, asked: TrainConfig) -> UsageError:
    changes = ", ".join(differences(saved, asked))
    return UsageError(
        f"{model_dir} holds a run with other settings: {changes}; "
        "pass --force to replace it, or --name to train elsewhere"
    )


def plan_run(
    model_dir: Path, config: TrainConfig, existing: Existing, start: Path | None = None
) -> Plan:
    """Decide what to do with one folder (which the caller has locked): see Existing."""
    return replace(plan_folder(model_dir, config, existing), start=start)


def plan_folder(model_dir: Path, config: TrainConfig, existing: Existing) -> Plan:
    state = folder_state(model_dir)
    if existing == Existing.resume and state != State.interrupted:
        what = {State.finished: "its run is finished", State.diverged: "its run diverged"}.get(
            state, "no interrupted run is there"
        )
        raise UsageError(f"nothing to resume in {model_dir}: {what}")
    if state in (State.empty, State.missing) or existing == Existing.force:
        return Plan(model_dir, config, Action.train, previous=state)
    saved, last = folder_config(model_dir, state)
    if existing in (Existing.resume, Existing.reuse) and saved != config:
        raise mismatch(model_dir, saved, config)
    if existing in (Existing.resume, Existing.reuse) and state == State.interrupted:
        return Plan(model_dir, config, Action.resume, last, state)
    if existing == Existing.reuse:
        return Plan(model_dir, config, Action.reuse, previous=state)
    if state == State.interrupted:
        raise UsageError(
            f"{model_dir} holds an interrupted run; pass --resume to continue it "
            "or --force to start over"
        )
    what = "a diverged run" if state == State.diverged else "a trained model"
    raise UsageError(
        f"{model_dir} already holds {what}; pass --force to replace it or --name to train another"
    )


# --- where runs go ------------------------------------------------------------------------


@dataclass
class Request:
    """One run asked for: its folder (or, without --name, the stem of a versioned one)."""

    config: TrainConfig
    name: str  # a folder name under models_dir; a seed group's member goes in <name>/seed-<k>
    seeded: bool = False  # part of a seed group: <name>/seed-<config.seed>
    start: Path | None = None  # a pruned run's source model folder (its config names its sha256)


def member_dir(models_dir: Path, request: Request) -> Path:
    """models_dir/<name>[/seed-<k>]; a sweep's name has two parts, <sweep>/<cell>."""
    folder = Path(models_dir)
    parts = request.name.split("/") + (
        [f"{SEED_PREFIX}{request.config.seed}"] if request.seeded else []
    )
    for part in parts:
        folder = check_name(part, folder)  # each part one plain folder inside the last
    return folder


def versioned(stem: str) -> Iterator[str]:
    """stem, stem-1, stem-2, ...: how experiment tools number repeated runs."""
    yield stem
    number = 1
    while True:
        yield f"{stem}-{number}"
        number += 1


def group_name(model_dir: Path, request: Request) -> str:
    """The folder name under models_dir that a request ended up using."""
    return Path(model_dir).parent.name if request.seeded else Path(model_dir).name


@contextmanager
def claim(requests: list[Request], options: RunOptions) -> Iterator[list[Plan]]:
    """Lock the requests' folders and plan each run; with options.versioned (no --name given),
    move to the next free versioned name (<mode>-1, -2, ...) until the folders are free (a
    single run) or hold identical seeds (a seed group)."""
    existing, models_dir = options.existing, Path(options.models_dir)
    if not options.versioned or existing in (Existing.force, Existing.resume):
        dirs = [member_dir(models_dir, r) for r in requests]
        with locked(dirs, options.purpose):
            yield [
                plan_run(d, r.config, existing, r.start)
                for d, r in zip(dirs, requests, strict=True)
            ]
        return
    for name in versioned(requests[0].name):
        renamed = [replace(r, name=name) for r in requests]
        dirs = [member_dir(models_dir, r) for r in renamed]
        with ExitStack() as stack:
            try:
                stack.enter_context(locked(dirs, options.purpose))
            except Locked:
                continue  # another process is writing there right now: the next name
            try:
                plans = [
                    plan_run(d, r.config, existing, r.start)
                    for d, r in zip(dirs, renamed, strict=True)
                ]
            except RegcliError:
                continue  # taken (by other settings, or unreadable): the next name
            yield plans
            return


def requests_for(
    base: TrainConfig, name: str | None, variants: list[str] | None, seeds: int | None
) -> list[Request]:
    """The runs one `regcli train` asks for: one model, seeds 0..N-1, or several variants (each
    its strengths from --l1 / --weight-decay), each variant with its seeds."""
    if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be in 1..{MAX_SEEDS}, got {seeds}")
    if variants:
        if name is not None:
            raise UsageError("--variants names each model after its variant; drop --name")
        if len(set(variants)) != len(variants):
            raise UsageError(f"--variants {','.join(variants)}: each variant once")
        configs = []
        for variant in variants:
            if variant not in MODES:
                raise UsageError(f"--variants {variant!r}: choose from {', '.join(MODES)}")
            l1 = base.l1 if "l1" in variant else 0.0
            weight_decay = base.weight_decay if variant in ("l2", "l1_l2") else 0.0
            config = replace(base, l1=l1, weight_decay=weight_decay)
            if config.mode != variant:
                raise UsageError(f"--variants {variant} needs --l1 and/or --weight-decay > 0")
            configs.append((variant, config))
    else:
        if name is not None:
            check_name(name, ".")  # one plain folder name (a sweep's two-part names are its own)
        configs = [(name or base.mode, base)]
    if seeds is None:
        return [Request(config, folder) for folder, config in configs]
    return [
        Request(replace(config, seed=seed), folder, seeded=True)
        for folder, config in configs
        for seed in range(seeds)
    ]


# --- interrupted runs: which may continue, and together with which ------------------------


def resume_groups(plans: list[Plan], models_dir: Path) -> list[list[Plan]]:
    """Interrupted runs, in the groups they were trained in: resuming needs the same members."""
    by_members: dict[tuple, list[Plan]] = {}
    for plan in plans:
        members = tuple(plan.last["group"]["members"])
        by_members.setdefault(members, []).append(plan)
    groups = []
    for members, found in by_members.items():
        names = [relative(p.model_dir, models_dir) for p in found]
        if sorted(names) != sorted(members):
            missing = sorted(set(members) - set(names))
            raise UsageError(
                f"{found[0].model_dir} was interrupted while training together with "
                f"{', '.join(missing) or 'other models'}; resuming needs the same members: "
                "run the same command again (or --force to start over)"
            )
        done = {len(p.last["history"]) for p in found if not p.last.get("diverged")}
        if len(done) > 1:  # a diverged member stopped early; the others saved together
            raise RegcliError(
                f"the interrupted group of {found[0].model_dir} saved different epochs "
                f"({sorted(done)}); start over with --force"
            )
        groups.append(sorted(found, key=lambda p: members.index(relative(p.model_dir, models_dir))))
    return groups


def check_resumable(model_dir: Path, saved: dict, now: dict) -> None:
    """A run continues bit for bit only on the device type and kernels it started with (and on
    a CPU, on as many threads): `saved` and `now` are run records."""
    device, deterministic = now["device"], now["deterministic"]
    was = (saved.get("device", device), saved.get("deterministic", deterministic))
    if device == "cuda" or was[0] == "cuda":
        if was != (device, deterministic):

            def kind(d, det):
                return f"{d}{' (deterministic)' if det else ' (--no-deterministic)'}"

            raise UsageError(
                f"{model_dir} was started on {kind(*was)}, and resuming on "
                f"{kind(device, deterministic)} would not continue it as it began; resume it "
                "there, or --force to start over"
            )
    elif was[0] != device:
        raise UsageError(
            f"{model_dir} was started on {was[0]}; resume it there (--device {was[0]}), or "
            "--force to start over"
        )
    if device == "cpu" and "threads" not in saved:
        warnings.warn(
            f"{model_dir} was started before regcli recorded its thread count; it resumes on "
            f"{now.get('threads')} thread(s) per model and may not continue bit for bit",
            RegcliWarning,
            stacklevel=2,
        )
        return
    threads = saved["threads"]
    if device == "cpu" and threads != now.get("threads"):
        raise UsageError(
            f"{model_dir} was started on {threads} CPU thread(s) per model, and another count "
            f"would not continue it as it began; resume it with --threads {threads}, or --force "
            "to start over"
        )


# --- what a job says of each run it was asked for: reused, trained, resumed, diverged or
# failed, with its final record (`--json`) and, for a divergence or a failure, the one line that
# says where or why


class Done(StrEnum):
    """How a requested run ended."""

    reused = "reused"
    trained = "trained"
    resumed = "resumed"
    diverged = "diverged"
    failed = "failed"


@dataclass
class Outcome:
    model_dir: Path
    config: TrainConfig
    action: Done
    history: list[dict] = field(default_factory=list)
    diverged: dict | None = None
    error: str | None = None  # why it failed (Done.failed)
    code: int = 1  # the exit code that error calls for

    def record(self) -> dict:
        """As `--json` shows it."""
        return {
            "model": str(self.model_dir),
            "action": self.action,
            "config": self.config.as_dict(),
            "final": self.history[-1] if self.history else None,
            "diverged": self.diverged,
            **({"error": self.error} if self.error else {}),
        }

    def failure(self) -> str | None:
        """One line saying why the run failed (None if it did not)."""
        return f"{self.model_dir}: {self.error}" if self.error else None

    def divergence(self) -> str | None:
        """One line saying where the run diverged (None if it did not)."""
        d = self.diverged
        if not d:
            return None
        loss = d["loss"] if isinstance(d["loss"], str) else f"{d['loss']:.4g}"
        which = "test loss" if d.get("during") == "test" else "loss"
        return (
            f"{self.model_dir}: training diverged in epoch {d['epoch']} at batch {d['batch']} "
            f"({which} {loss}); try a smaller --lr, --l1 or --weight-decay"
        )
