"""Runs on disk: which folder a run goes to, whether it may be reused or resumed, one writer per
folder, training the pending ones as groups, and saving each as an ordinary model folder.

A model folder holds one configuration. A finished (or diverged) run is reused, and an
interrupted one resumed, only when its saved TrainConfig equals the requested one; anything else
is refused naming the differing fields. Every folder a command writes to is locked (see
artifacts.ModelLock) from before it is inspected until the command is done.

After every epoch each run's state goes to <model_dir>/last.pt, atomically. Ctrl-C or SIGTERM
stops at the next batch boundary; the same command with --resume (or, for seeds and sweeps, the
same command) continues from last.pt and ends exactly where an uninterrupted run would (same
device, same group). When the run finishes, model.pt and the metrics replace last.pt.
"""

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from regcli.checkpoints import (
    checkpoint_config,
    load_checkpoint,
    load_run_state,
    save_run,
    save_run_state,
)
from regcli.config import MODES, TrainConfig, differences, group_key
from regcli.data import load_split
from regcli.devices import default_group_size, resolve_device
from regcli.errors import Diverged, Interrupted, Locked, RegcliError, UsageError
from regcli.events import Reporter
from regcli.files import ensure_writable
from regcli.layout import (
    CHECKPOINT_NAME,
    LAST_NAME,
    ONNX_NAME,
    SEED_PREFIX,
    check_name,
    figure_path,
    folders_holding,
    model_label,
)
from regcli.locks import LOCK_NAME, lock_holder, locked
from regcli.plots import history_figure, save_figure
from regcli.provenance import run_record, utc_now
from regcli.records import METRICS_NAME, EpochRecord, load_metrics, write_metrics
from regcli.tables import render
from regcli.text import terminal_safe
from regcli.train import MemberState, StopFlag, train_group

MAX_SEEDS = 1_000  # seeds per configuration; more is a typo, not a study


def folder_state(model_dir: Path) -> str:
    """ "interrupted" (last.pt), "finished" (model.pt), "diverged" (metrics say so) or "empty"."""
    model_dir = Path(model_dir)
    if (model_dir / LAST_NAME).is_file():
        return "interrupted"
    if (model_dir / CHECKPOINT_NAME).is_file():
        return "finished"
    if (model_dir / METRICS_NAME).is_file():
        with suppress(RegcliError):
            if load_metrics(model_dir).get("status") == "diverged":
                return "diverged"
    return "empty"


def folder_config(model_dir: Path, state: str) -> tuple[TrainConfig, dict | None]:
    """The config a folder's run was made with (and, if interrupted, its last.pt content)."""
    if state == "interrupted":
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
    action: str  # "reuse" (finished or diverged, identical config), "resume", "train"
    last: dict | None = None  # last.pt content, for "resume"
    previous: str = "empty"  # the folder's state before this command


def mismatch(model_dir: Path, saved: TrainConfig, asked: TrainConfig) -> UsageError:
    changes = ", ".join(differences(saved, asked))
    return UsageError(
        f"{model_dir} holds a run with other settings: {changes}; "
        "pass --force to replace it, or --name to train elsewhere"
    )


def plan_run(
    model_dir: Path, config: TrainConfig, *, force: bool, resume: bool, reuse: bool
) -> Plan:
    """Decide what to do with one folder (which the caller has locked).

    reuse=True (seed groups, sweeps): identical finished runs are reused and identical
    interrupted ones resumed. reuse=False (a named run): the folder must be empty unless
    --force replaces it or --resume continues it.
    """
    state = folder_state(model_dir)
    if resume and state != "interrupted":
        what = {"finished": "its run is finished", "diverged": "its run diverged"}.get(
            state, "no interrupted run is there"
        )
        raise UsageError(f"nothing to resume in {model_dir}: {what}")
    if state == "empty" or (force and not resume):
        return Plan(model_dir, config, "train", previous=state)
    saved, last = folder_config(model_dir, state)
    if (resume or reuse) and saved != config:
        raise mismatch(model_dir, saved, config)
    if state == "interrupted" and (resume or reuse):
        return Plan(model_dir, config, "resume", last, state)
    if reuse:
        return Plan(model_dir, config, "reuse", previous=state)
    if state == "interrupted":
        raise UsageError(
            f"{model_dir} holds an interrupted run; pass --resume to continue it "
            "or --force to start over"
        )
    what = "a diverged run" if state == "diverged" else "a trained model"
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


@contextmanager
def claim(
    requests: list[Request],
    models_dir: Path,
    *,
    auto_name: bool,
    force: bool,
    resume: bool,
    purpose: str,
) -> Iterator[list[Plan]]:
    """Lock the requests' folders and plan each run; with auto_name (no --name given), move to
    the next free versioned name (<mode>-1, -2, ...) until the folders are free (single run)
    or hold identical seeds (a seed group)."""
    models_dir = Path(models_dir)
    reuse = any(r.seeded for r in requests)
    if not auto_name or force or resume:
        dirs = [member_dir(models_dir, r) for r in requests]
        with locked(dirs, purpose):
            yield [
                plan_run(d, r.config, force=force, resume=resume, reuse=r.seeded)
                for d, r in zip(dirs, requests, strict=True)
            ]
        return
    for name in versioned(requests[0].name):
        renamed = [Request(r.config, name, r.seeded) for r in requests]
        dirs = [member_dir(models_dir, r) for r in renamed]
        with ExitStack() as stack:
            try:
                stack.enter_context(locked(dirs, purpose))
            except Locked:
                continue  # another process is writing there right now: the next name
            try:
                plans = [
                    plan_run(d, r.config, force=False, resume=False, reuse=reuse)
                    for d, r in zip(dirs, renamed, strict=True)
                ]
            except RegcliError:
                continue  # taken (by other settings, or unreadable): the next name
            yield plans
            return


# --- training the pending runs as groups ----------------------------------------------------


def relative(model_dir: Path, models_dir: Path) -> str:
    try:
        return Path(model_dir).relative_to(models_dir).as_posix()
    except ValueError:
        return Path(model_dir).as_posix()


def resume_groups(plans: list[Plan], models_dir: Path) -> list[list[Plan]]:
    """Interrupted runs, in the groups they were trained in: resuming needs the same members."""
    by_members: dict[tuple, list[Plan]] = {}
    for plan in plans:
        members = tuple(plan.last["group"].get("members", ()))
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
        done = {len(p.last["history"]) for p in found}
        if len(done) > 1:
            raise RegcliError(
                f"the interrupted group of {found[0].model_dir} saved different epochs "
                f"({sorted(done)}); start over with --force"
            )
        groups.append(sorted(found, key=lambda p: members.index(relative(p.model_dir, models_dir))))
    return groups


def fresh_groups(plans: list[Plan], size: int) -> list[list[Plan]]:
    """New runs in groups of at most `size`, members of a group sharing epochs and batches."""
    by_key: dict[tuple, list[Plan]] = {}
    for plan in plans:
        by_key.setdefault(group_key(plan.config), []).append(plan)
    return [found[i : i + size] for found in by_key.values() for i in range(0, len(found), size)]


@dataclass
class Outcome:
    model_dir: Path
    config: TrainConfig
    action: str  # "reused", "trained", "resumed", "diverged"
    history: list[dict] = field(default_factory=list)
    diverged: dict | None = None

    def record(self) -> dict:
        """As `--json` shows it."""
        return {
            "model": str(self.model_dir),
            "action": self.action,
            "config": self.config.as_dict(),
            "final": self.history[-1] if self.history else None,
            "diverged": self.diverged,
        }

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


class StopSignals:
    """SIGINT and SIGTERM set a flag the trainer checks between batches (a second one kills)."""

    watched = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopFlag:
        self.flag = StopFlag()

        def request_stop(number, _frame):
            self.flag.signal_number = number
            for s in self.watched:  # a second signal gets the default behaviour: stop now
                signal.signal(s, self.previous[s])

        self.previous = {s: signal.signal(s, request_stop) for s in self.watched}
        return self.flag

    def __exit__(self, *exc):
        for s in self.watched:
            signal.signal(s, self.previous[s])


def train_plans(
    plans: list[Plan],
    *,
    models_dir: Path,
    images_dir: Path | None,
    data_dir: Path | None,
    device_name: str = "auto",
    group_size: int | None = None,
    deterministic: bool = True,
    reporter: Reporter | None = None,
    command: list[str] = (),
    on_saved: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Train (or resume) every plan that needs it, in groups, and save each member's folder.

    images_dir=None writes no history plots (a sweep's models keep their figures one
    command away). Returns one outcome per plan, in order.
    """
    models_dir = Path(models_dir)
    pending = [p for p in plans if p.action != "reuse"]
    outcomes = {id(p): reused(p) for p in plans if p.action == "reuse"}
    for outcome in outcomes.values():
        if on_saved:
            on_saved(outcome)
    if pending:
        device = resolve_device(device_name)
        if group_size is not None and group_size < 1:
            raise UsageError(f"--group-size must be >= 1, got {group_size}")
        size = group_size or default_group_size(device)
        splits = load_split(data_dir, "train"), load_split(data_dir, "test")
        folders = {p.model_dir for p in pending} | ({Path(images_dir)} if images_dir else set())
        for folder in folders:
            ensure_writable(folder)  # fail now, not after the whole run
        for plan in pending:
            remove_stale_temporaries(plan.model_dir)
        groups = resume_groups([p for p in pending if p.action == "resume"], models_dir)
        groups += fresh_groups([p for p in pending if p.action == "train"], size)
        if reporter:
            reporter.job_started(sum(model_steps(g, len(splits[0])) for g in groups))
        with StopSignals() as stop:
            while groups:
                group = groups.pop(0)
                try:
                    saved = train_one_group(
                        group,
                        splits,
                        device,
                        models_dir=models_dir,
                        images_dir=images_dir,
                        deterministic=deterministic,
                        reporter=reporter,
                        command=command,
                        stop=stop,
                    )
                except GroupTooLarge:  # out of GPU memory before its first epoch: halve it
                    torch.cuda.empty_cache()
                    groups[:0] = [group[: len(group) // 2], group[len(group) // 2 :]]
                    continue
                for plan, outcome in saved:
                    outcomes[id(plan)] = outcome
                    if on_saved:
                        on_saved(outcome)
    return [outcomes[id(p)] for p in plans]


def model_steps(group: list[Plan], train_images: int) -> int:
    """How many (model, step) pairs a group has left to train: the job's unit of progress."""
    config = group[0].config
    steps = -(-min(config.train_images, train_images) // config.batch_size)
    done = len(group[0].last["history"]) if group[0].action == "resume" else 0
    return len(group) * (config.epochs - done) * steps


def remove_stale_temporaries(model_dir: Path) -> None:
    """Temporary files a killed writer left in this run's own folder (it holds the lock)."""
    for leftover in Path(model_dir).glob(".*.tmp"):
        with suppress(OSError):
            leftover.unlink()


def reused(plan: Plan) -> Outcome:
    metrics = load_metrics(plan.model_dir)
    return Outcome(
        plan.model_dir, plan.config, "reused", metrics["epochs"], metrics.get("diverged")
    )


class GroupTooLarge(Exception):
    """A group ran out of GPU memory before its first epoch: train it in halves instead."""


def train_one_group(
    group: list[Plan],
    splits,
    device: torch.device,
    *,
    models_dir: Path,
    images_dir: Path | None,
    deterministic: bool,
    reporter: Reporter | None,
    command: list[str],
    stop: StopFlag,
) -> list[tuple[Plan, Outcome]]:
    """Train one group and save its members (GroupTooLarge if it does not fit in GPU memory)."""
    members = [relative(p.model_dir, models_dir) for p in group]
    run = {
        "started": utc_now(),
        "command": list(command),
        "device": device.type,
        "deterministic": deterministic,
        "seconds": 0.0,
        "resumed_by": [],
    }
    resume = None
    if group[0].action == "resume":
        run = {**run, **group[0].last["run"]}
        check_resumable(group[0].model_dir, run, device, deterministic)
        run["resumed_by"] = [*run.get("resumed_by", []), list(command)]
        resume = [member_state(p.last) for p in group]
    epochs_saved = len(resume[0].history) if resume else 0
    label = model_label(group[0].model_dir) if len(group) == 1 else f"{len(group)} models"
    clock, before = time.perf_counter(), run["seconds"]

    def save_last(states: list[MemberState]) -> None:
        nonlocal epochs_saved
        epochs_saved = len(states[0].history)  # the group saves together
        run["seconds"] = round(before + time.perf_counter() - clock, 3)
        for index, (plan, state) in enumerate(zip(group, states, strict=True)):
            save_run_state(
                plan.model_dir,
                {
                    "config": plan.config.as_dict(),
                    "weights": state.weights,
                    "momentum": state.momentum,
                    "history": [r.as_dict() for r in state.history],
                    "diverged": state.diverged,
                    "group": {"size": len(group), "index": index, "members": members},
                    "run": run,
                },
            )

    try:
        states, info = train_group(
            [p.config for p in group],
            *splits,
            device,
            reporter=reporter,
            resume=resume,
            on_epoch=save_last,
            stop=stop,
            deterministic=deterministic,
            label=label,
        )
    except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            raise
        if epochs_saved or len(group) == 1:
            raise RegcliError(
                f"out of GPU memory training {label}; try a smaller --group-size"
            ) from None
        raise GroupTooLarge from None
    except (Interrupted, Diverged) as stopped:
        where = group[0].model_dir / LAST_NAME if len(group) == 1 else f"each model's {LAST_NAME}"
        kept = (
            f"epoch {epochs_saved}/{group[0].config.epochs} is saved in {where}"
            if epochs_saved
            else "no epoch was completed"
        )
        stopped.args = (f"{stopped}; {kept}",)
        stopped.epochs_saved = epochs_saved
        raise
    seconds = before + time.perf_counter() - clock
    saved = []
    for index, (plan, state) in enumerate(zip(group, states, strict=True)):
        record = run_record(
            run["command"],
            run["started"],
            str(device),
            seconds=round(seconds, 3),
            group={"size": len(group), "index": index, "members": members},
            deterministic=info["deterministic"],
            cuda_graphs=info["cuda_graphs"],
            **({"resumed_by": run["resumed_by"]} if run["resumed_by"] else {}),
        )
        saved.append((plan, save_member(plan, state, record, images_dir)))
    return saved


def out_of_memory(error: BaseException) -> bool:
    """CUDA out of memory: PyTorch's own error, or cuDNN's and cuBLAS's as a RuntimeError."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def check_resumable(model_dir: Path, run: dict, device: torch.device, deterministic: bool) -> None:
    """A run continues bit for bit only on the device type and kernels it started with."""
    saved = (run.get("device", device.type), run.get("deterministic", deterministic))
    if device.type == "cuda" or saved[0] == "cuda":
        if saved != (device.type, deterministic):

            def kind(d, det):
                return f"{d}{' (deterministic)' if det else ' (--no-deterministic)'}"

            raise UsageError(
                f"{model_dir} was started on {kind(*saved)}, and resuming on "
                f"{kind(device.type, deterministic)} would not continue it as it began; resume it "
                "there, or --force to start over"
            )
    elif saved[0] != device.type:
        raise UsageError(
            f"{model_dir} was started on {saved[0]}; resume it there (--device {saved[0]}), or "
            "--force to start over"
        )


def member_state(last: dict) -> MemberState:
    return MemberState(
        weights=last["weights"],
        momentum=last["momentum"],
        history=[EpochRecord(**r) for r in last["history"]],
        diverged=last.get("diverged"),
    )


def save_member(plan: Plan, state: MemberState, record: dict, images_dir: Path | None) -> Outcome:
    """A finished member as an ordinary model folder (or a diverged one as its metrics)."""
    model_dir, history = plan.model_dir, [r.as_dict() for r in state.history]
    stale = [model_dir / ONNX_NAME]  # exported from whatever was here before
    if state.diverged:  # what an earlier run of this folder left no longer describes it
        stale += [model_dir / CHECKPOINT_NAME]
        for leftover in [model_dir / "metrics.csv"] + (
            [figure_path(images_dir, model_label(model_dir), "history")]
            if images_dir is not None
            else []
        ):
            leftover.unlink(missing_ok=True)
        write_metrics(model_dir, plan.config, history, record, diverged=state.diverged)
        action = "diverged"
    else:
        save_run(model_dir, state.weights, plan.config, history, record)
        if images_dir is not None:
            plot_history(model_dir, images_dir)
        action = "resumed" if plan.action == "resume" else "trained"
    for path in [*stale, model_dir / LAST_NAME]:
        path.unlink(missing_ok=True)
    return Outcome(model_dir, plan.config, action, history, state.diverged)


def plot_history(model_dir: Path, images_dir: Path, label: str | None = None) -> Path:
    """images/<label>_history.png from the model's metrics.json."""
    label = label or model_label(model_dir)
    target = figure_path(images_dir, label, "history")
    save_figure(history_figure(label, load_metrics(model_dir)["epochs"]), target)
    return target


# --- what is there: `regcli runs` -----------------------------------------------------------


def list_runs(models_dir: Path) -> list[dict]:
    """Every run folder under models_dir: settings, progress, state and final accuracy."""
    root = Path(models_dir)
    if not root.is_dir():
        raise RegcliError(f"no models folder at {root}")
    markers = (CHECKPOINT_NAME, LAST_NAME, METRICS_NAME, LOCK_NAME)
    return [describe(folder, root) for folder in folders_holding(root, markers)]


def describe(folder: Path, root: Path) -> dict:
    state = folder_state(folder)
    holder = lock_holder(folder)
    row = {
        "name": relative(folder, root),
        "state": state,
        "mode": None,
        "l1": None,
        "weight_decay": None,
        "seed": None,
        "epochs": None,
        "of": None,
        "test_accuracy": None,
    }
    try:
        if state == "empty" and not holder:
            return row
        if state == "interrupted":
            last = load_run_state(folder)
            config, history = last["config"], last["history"]
        elif state != "empty":
            metrics = load_metrics(folder)
            config, history = TrainConfig.from_dict(metrics["config"]), metrics["epochs"]
        else:
            config, history = None, []
    except RegcliError as error:
        return {**row, "state": f"unreadable ({error})"}
    if config is not None:
        row.update(
            mode=config.mode,
            l1=config.l1,
            weight_decay=config.weight_decay,
            seed=config.seed,
            epochs=len(history),
            of=config.epochs,
        )
        if history and state == "finished":
            row["test_accuracy"] = history[-1]["test_accuracy"]
    if holder:
        row["state"] = f"locked by {holder}"
    return row


# --- `regcli train`: from options to saved models --------------------------------------------


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


def train_job(
    requests: list[Request],
    *,
    models_dir: Path,
    images_dir: Path | None,
    data_dir: Path | None,
    auto_name: bool,
    force: bool,
    resume: bool,
    device_name: str = "auto",
    group_size: int | None = None,
    deterministic: bool = True,
    reporter: Reporter | None = None,
    command: list[str] = (),
    announce: Callable[[str], None] = lambda message: None,
    on_saved: Callable[[Outcome], None] | None = None,
    purpose: str = "regcli train",
) -> list[Outcome]:
    """Claim the folders, say what is reused or resumed, train the rest, save every model."""
    with claim(
        requests, models_dir, auto_name=auto_name, force=force, resume=resume, purpose=purpose
    ) as plans:
        if (
            auto_name
            and not force
            and requests[0].name != group_name(plans[0].model_dir, requests[0])
        ):
            announce(
                f"{models_dir / requests[0].name} is taken; training into "
                f"{models_dir / group_name(plans[0].model_dir, requests[0])}"
            )
        announce_plans(plans, models_dir, announce)
        try:
            return train_plans(
                plans,
                models_dir=models_dir,
                images_dir=images_dir,
                data_dir=data_dir,
                device_name=device_name,
                group_size=group_size,
                deterministic=deterministic,
                reporter=reporter,
                command=command,
                on_saved=on_saved,
            )
        except Interrupted as stopped:  # what the CLI needs to say how to go on
            stopped.folder = group_name(plans[0].model_dir, requests[0])
            stopped.needs_force = any(p.previous != "empty" for p in plans)
            raise


def announce_plans(plans: list[Plan], models_dir: Path, announce: Callable[[str], None]) -> None:
    """Say what is reused and resumed, once the resumed runs are known to be resumable."""
    resume_groups([p for p in plans if p.action == "resume"], models_dir)
    for plan in plans:
        if plan.action != "train":
            announce(f"{'reusing' if plan.action == 'reuse' else 'resuming'} {plan.model_dir}")


def group_name(model_dir: Path, request: Request) -> str:
    """The folder name under models_dir that a request ended up using."""
    return Path(model_dir).parent.name if request.seeded else Path(model_dir).name


def runs_table(rows: list[dict]) -> str:
    """`regcli runs`: one line per run folder."""

    def number(value, fmt):
        return "-" if value is None else format(value, fmt)

    body = [
        [
            terminal_safe(r["name"]),
            r["mode"] or "-",
            number(r["l1"], "g"),
            number(r["weight_decay"], "g"),
            number(r["seed"], "d"),
            f"{r['epochs']}/{r['of']}" if r["of"] is not None else "-",
            terminal_safe(r["state"]),
            number(None if r["test_accuracy"] is None else 100 * r["test_accuracy"], ".2f"),
        ]
        for r in rows
    ]
    headers = ["run", "mode", "l1", "weight decay", "seed", "epochs", "state", "test acc %"]
    return render(headers, body, align="<<>>>><>")
