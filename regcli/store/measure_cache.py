"""A model's measured numbers cached beside it (pruned accuracies, accuracies under shift), each
cache valid only for the exact key it was written for (the model.pt's sha256, the backend, the
test-set size, ...) and holding only finite percentages; anything else is measured again (a
cache of its key holding anything else is also said, as a RegcliWarning).
"""

import math
import warnings
from collections.abc import Callable
from pathlib import Path

from regcli.core.errors import RegcliError, RegcliWarning
from regcli.core.files import FileProblem, read_json, write_json
from regcli.core.locks import ModelLock


def cached_numbers(
    path: Path, key: dict, wanted: list[str], measure: Callable[[str], float], **extra
) -> dict[str, float]:
    """{name: number} for every wanted name: from the cache at `path` where it holds them for
    `key`, else `measure(name)`; the cache is refreshed when something was measured (unless the
    folder is locked by a run or read-only: the numbers are returned anyway)."""
    known = cached_percentages(path, key)
    if known is None:  # unreadable, or for this very key with numbers that are not percentages
        warnings.warn(
            f"{path}: unreadable, or holds numbers that are not finite percentages; measured again",
            RegcliWarning,
            stacklevel=2,
        )
        known = {}
    missing = [name for name in wanted if name not in known]
    for name in missing:
        known[name] = measure(name)
    if missing:
        try:
            with ModelLock(path.parent, f"regcli {path.stem} cache"):
                write_json(path, {**key, **extra, "accuracy": known})
        except RegcliError:
            pass
    return {name: known[name] for name in wanted}


def cached_percentages(path: Path, key: dict) -> dict[str, float] | None:
    """The numbers in a cache if it is for `key` ({} if it is for another key, or absent), or
    None if it is unreadable, or for `key` but holding more than finite percentages (none of it
    is used then)."""
    if not path.exists():
        return {}
    try:
        cache = read_json(path)
    except FileProblem:
        return None  # there, but not a JSON table of numbers (NaN is not JSON): said, replaced
    if not isinstance(cache, dict) or any(cache.get(k) != v for k, v in key.items()):
        return {}
    known = cache.get("accuracy")
    if not isinstance(known, dict):
        return None
    good = {
        name: value
        for name, value in known.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 100
    }
    return good if len(good) == len(known) else None
