"""How long a study took, from its models' run records: the machine, the training seconds summed
over the models, the wall time from the first start to the last finish, and how many trained at
once (a study trained in several processes overlaps)."""

from datetime import UTC, datetime
from pathlib import Path

from regcli.core.errors import RegcliError
from regcli.core.tables import clock
from regcli.store.records import load_metrics


def run_times(run: dict) -> tuple[datetime, datetime] | None:
    """A run record's start and finish as UTC times (a time without a zone is UTC), or None
    when either is missing, unreadable, or the finish comes before the start."""
    try:
        times = [datetime.fromisoformat(run[key]) for key in ("started", "finished")]
    except (KeyError, TypeError, ValueError):
        return None
    started, finished = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in times)
    return (started, finished) if started <= finished else None


def study_runs(folders: list[Path]) -> dict | None:
    """How a study's models were trained, from their run records (see runs_summary)."""
    runs = []
    for folder in folders:
        try:
            runs.append(load_metrics(folder).get("run") or {})
        except RegcliError:
            continue
    return runs_summary(runs)


def runs_summary(runs: list[dict]) -> dict | None:
    """Machine, models, the sum of their training seconds, the wall time from the first start
    to the last finish, and how many trained at once, from run records (None: no times)."""
    spans, seconds, machine, cores = [], 0.0, None, None
    for run in runs:
        span = run_times(run)
        if span is None:
            continue
        spans.append(span)
        seconds += run.get("seconds") or 0.0
        info = run.get("machine") or {}
        machine, cores = info.get("gpu") or info.get("cpu") or machine, info.get("cores", cores)
    if not spans:
        return None
    wall = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
    return {
        "models": len(spans),
        "machine": machine,
        "cores": cores,
        "seconds": seconds,
        "wall_seconds": wall,
        "at_once": at_once(spans),
    }


def at_once(spans: list[tuple]) -> int:
    """The most runs whose (start, finish) spans overlap: how many trained side by side."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:  # a finish sorts before a start at the same second
        running += change
        most = max(most, running)
    return most


def runs_text(runs: dict, subject: str) -> str:
    """One sentence of study_runs' numbers; `subject` names the models ({models}: their count)."""
    cores = f", {runs['cores']} cores" if runs.get("cores") else ""
    return (
        f"{subject.format(models=runs['models'])} trained on {runs['machine']}{cores}, in "
        f"{clock(runs['wall_seconds'])} of wall time, up to {runs['at_once']} at once "
        f"({clock(runs['seconds'])} of training summed over the models)."
    )
