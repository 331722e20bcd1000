"""Every name regcli gives a file or folder: model folders and what they hold, which folders
form a seed group, a sweep's cell folders, and the figures drawn from them.

A seed group is only real `seed-<k>` folders (not links) of one parent; a name given with
--name is one plain folder of bounded length, so that every file derived from it fits; the
same folder given twice counts once; and labels and figure names are unique among the models
of one command. Nothing here loads PyTorch, so that commands on ONNX models start fast.
"""

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from regcli.core.errors import RegcliError, UsageError
from regcli.core.text import natural_key, terminal_safe

CHECKPOINT_NAME = "model.pt"  # a finished run
METRICS_NAME = "metrics.json"  # a run's record: its config, its epochs, how it was trained
METRICS_CSV_NAME = "metrics.csv"  # the same epoch rows, for a spreadsheet
LAST_NAME = "last.pt"  # an unfinished run's state after its last completed epoch
ONNX_NAME = "model.onnx"
PRUNING_CACHE_NAME = "pruning.json"  # beside model.pt: accuracy (%) after pruning, by its sha256
SHIFTS_CACHE_NAME = "shifts.json"  # beside model.pt: accuracy (%) per shifted test set, the same
# where figures go: images/ is the committed study's (`regcli report` and the study's make
# targets write there), figures/ (ignored by git) every other command's default
STUDY_FIGURES, USER_FIGURES = Path("images"), Path("figures")
SEED_PREFIX = "seed-"  # <name>/seed-<k>/: one of several seeds of the same configuration
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")
MAX_NAME_LENGTH = 64  # characters in a --name: <name>_seed-<k>_misclassified.png and a
# temporary sibling of it (.<file>.<pid>.<random>.tmp) stay far below the 255-byte file name limit
MAX_DEPTH = 16  # folders below --models-dir searched for models (a sweep's seeds are at 3)
# The summary figures of the default selection (every model, or `report`'s study); a command
# given an explicit subset of models writes under a name derived from the subset instead.
FIGURES = {
    "compare": "model_compare.png",
    "weights": "weights_compare.png",
    "pruning": "pruning_compare.png",
}


def checkpoint_path(model: Path | str) -> Path:
    """A model directory or a model.pt file -> the model.pt path, which must exist."""
    path = Path(model)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        where = path.parent if path.name == CHECKPOINT_NAME else path
        raise RegcliError(
            f"no regcli model at {where} (expected {CHECKPOINT_NAME}; "
            "train one with `regcli train`)"
        )
    return path


# --- model folders and their names ----------------------------------------------------------


def check_name(name: str, models_dir: Path | str, option: str = "--name") -> Path:
    """models_dir/name, refusing names that are not one plain folder inside models_dir."""
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"{option}: at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    if not NAME_PATTERN.fullmatch(name) or set(name) <= {"."}:
        raise UsageError(
            f"{option} {name!r}: use letters, digits, '.', '_', '+' and '-', "
            "not starting with '-' or '.'"
        )
    root = Path(models_dir).resolve()
    target = (root / name).resolve()
    if target.parent != root:
        raise UsageError(f"{option} {name!r} leaves --models-dir {models_dir}")
    return Path(models_dir) / name


def within_models_dir(folder: Path, models_dir: Path | str) -> Path:
    """A folder a command will write into: one that lies under --models-dir (as written) must
    still lie under it once links are followed (a linked group or cell folder would take the
    writes elsewhere). A folder the user named outside --models-dir is the user's choice."""
    root = Path(os.path.abspath(models_dir))
    written = Path(os.path.abspath(folder))
    if written.is_relative_to(root) and not Path(folder).resolve().is_relative_to(root.resolve()):
        raise RegcliError(
            f"{folder} leads outside --models-dir {models_dir} through a symbolic link; regcli "
            "writes only into real folders there (move the folder in, or remove the link)"
        )
    return Path(folder)


def seed_number(model_dir: Path) -> int | None:
    name = Path(model_dir).name
    suffix = name.removeprefix(SEED_PREFIX)
    canonical = suffix.isascii() and suffix.isdigit() and str(int(suffix)) == suffix
    return int(suffix) if name.startswith(SEED_PREFIX) and canonical else None


def real_dir(path: Path) -> bool:
    """A folder, and not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def seed_dirs(folder: Path) -> list[Path]:
    """The real seed-<k> folders under folder that hold a model, in seed order."""
    found = [p for p in Path(folder).glob(f"{SEED_PREFIX}*") if seed_number(p) is not None]
    held = (p for p in found if real_dir(p) and (p / CHECKPOINT_NAME).is_file())
    return sorted(held, key=seed_number)


def is_seed_member(model_dir: Path) -> bool:
    """A real seed-<k> folder (the only kind of folder that belongs to a seed group)."""
    return seed_number(model_dir) is not None and real_dir(Path(model_dir))


def model_group(model_dir: Path) -> str:
    """The configuration a model belongs to: <name> for models/<name>/ and its seed-<k>/."""
    model_dir = Path(model_dir)
    return model_dir.parent.name if is_seed_member(model_dir) else model_dir.name


def model_label(model_dir: Path) -> str:
    """How tables and legends name a model: <name>, or <name>/seed-<k>, an atlas's cells with
    their size in front (terminal-safe: a folder name's control characters are escaped)."""
    model_dir = Path(model_dir)
    if is_seed_member(model_dir):
        size = model_dir.parent.parent.name
        front = f"{size}/" if parse_size_folder(size) is not None else ""
        return terminal_safe(f"{front}{model_dir.parent.name}/{model_dir.name}")
    return terminal_safe(model_dir.name)


def unique_labels(model_dirs: list[Path], models_dir: Path | str = "models") -> dict[Path, str]:
    """A label per folder, unique among them: its path under --models-dir (`l1/seed-0`,
    `sweep/l1-0_wd-0/seed-0`), or for a folder elsewhere its model_label, with as many parent
    folders in front as it takes to tell it apart from the others (a/m and b/m)."""
    root = Path(models_dir).resolve()
    labels, outside = {}, []
    for d in model_dirs:
        relative = inside(d, root)
        labels[d] = terminal_safe(relative) if relative not in (None, ".") else model_label(d)
        if relative in (None, "."):
            outside.append(d)
    parts = {d: Path(os.path.abspath(d)).parts for d in outside}
    depth = {d: labels[d].count("/") + 1 for d in outside}
    while True:
        seen: dict[str, list[Path]] = {}
        for d, label in labels.items():
            seen.setdefault(label, []).append(d)
        clashing = [d for ds in seen.values() if len(ds) > 1 for d in ds if d in depth]
        clashing = [d for d in clashing if depth[d] < len(parts[d])]
        if not clashing:
            return labels
        for d in clashing:
            depth[d] += 1
            labels[d] = terminal_safe("/".join(parts[d][-depth[d] :]).lstrip("/"))


def inside(folder: Path, root: Path) -> str | None:
    """folder's path under root (resolved), or None if it is not under root."""
    try:
        return Path(folder).resolve().relative_to(root).as_posix()
    except ValueError:
        return None


def walk_folders(root: Path, max_depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Every real folder under root (root included) down to max_depth, links not followed,
    with an explicit stack: a folder nested a thousand deep is no recursion."""
    stack = [(Path(root), 0)]
    while stack:
        folder, depth = stack.pop()
        yield folder
        if depth == max_depth:
            continue
        try:
            with os.scandir(folder) as entries:
                children = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        stack += [(child, depth + 1) for child in sorted(children, key=natural_key, reverse=True)]


def folders_holding(root: Path, names: tuple[str, ...]) -> list[Path]:
    """The folders under root that hold a file (or anything) of one of these names."""
    found = [f for f in walk_folders(root) if any(os.path.lexists(f / n) for n in names)]
    return sorted(found, key=natural_key)


# --- a sweep's cells: <sweep>/<cell>/seed-<k>, the cell named by its strengths ---------------

CELL_PATTERN = re.compile(r"l1-(?P<l1>[0-9.e+-]+)_wd-(?P<wd>[0-9.e+-]+)")


def strength_text(value: float) -> str:
    """The shortest text that reads back to exactly this strength (3e-05, 0.001, 0)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def cell_name(l1: float, weight_decay: float) -> str:
    return f"l1-{strength_text(l1)}_wd-{strength_text(weight_decay)}"


def parse_cell(name: str) -> tuple[float, float] | None:
    match = CELL_PATTERN.fullmatch(name)
    if not match:
        return None
    try:
        return float(match["l1"]), float(match["wd"])
    except ValueError:
        return None


PRUNED_PATTERN = re.compile(
    rf"(?P<cell>{CELL_PATTERN.pattern})_prune-(?P<sparsity>[0-9.e-]+)_retrain-(?P<retrain>[0-9]+)"
    r"(?:_steps-(?P<steps>[0-9]+))?(?:_lr-(?P<lr>[0-9.e+-]+))?"
)


def pruned_cell_name(
    l1: float, weight_decay: float, sparsity: float, retrain: int, steps: int, lr: float | None
) -> str:
    """A pruned run's cell: its source's strengths, the sparsity, the retraining epochs per
    step, the steps when more than one, the learning rate when not the default (None)."""
    name = f"{cell_name(l1, weight_decay)}_prune-{strength_text(sparsity)}_retrain-{retrain}"
    return (
        name + (f"_steps-{steps}" if steps > 1 else "") + (f"_lr-{strength_text(lr)}" if lr else "")
    )


def is_pruned_cell(name: str) -> bool:
    return PRUNED_PATTERN.fullmatch(name) is not None


SIZE_PREFIX = "size-"  # an atlas's sweep: <sweep>/size-<n>/<cell>/seed-<k>


def size_folder(train_images: int) -> str:
    return f"{SIZE_PREFIX}{train_images}"


def parse_size_folder(name: str) -> int | None:
    digits = name.removeprefix(SIZE_PREFIX)
    plain = digits.isascii() and digits.isdigit()
    if name.startswith(SIZE_PREFIX) and plain and digits == str(int(digits)):
        return int(digits)
    return None


# --- figures ---------------------------------------------------------------------------------


def figure_path(images_dir: Path, label: str, kind: str) -> Path:
    """<images-dir>/<label>_<kind>.png, a label's '/' as '_' (<name>_seed-<k>_<kind>.png)."""
    return Path(images_dir) / f"{label.replace('/', '_')}_{kind}.png"


def figure_paths(
    images_dir: Path, model_dirs: list[Path], kind: str, models_dir: Path | str = "models"
) -> dict[Path, Path]:
    """Each model's own figure, named after its unique label (two models never share one)."""
    labels = unique_labels(model_dirs, models_dir)
    paths = {d: figure_path(images_dir, labels[d], kind) for d in model_dirs}
    taken: dict[Path, list[Path]] = {}
    for d, path in paths.items():
        taken.setdefault(path, []).append(d)
    for clash in (ds for ds in taken.values() if len(ds) > 1):  # a_b and a/b: both a_b
        for d in clash:
            digest = hashlib.sha256(os.path.abspath(d).encode()).hexdigest()[:8]
            paths[d] = figure_path(images_dir, f"{labels[d]}-{digest}", kind)
    return paths


def summary_figure(
    kind: str,
    images_dir: Path,
    selection: list[Path] | None,
    out: Path | None = None,
    models_dir: Path | str = "models",
) -> Path:
    """Where a multi-model figure goes: --out, else the fixed name for the default selection,
    else a name derived from the models chosen, so that one model never replaces the study's
    figure and two selections never share one: their paths under --models-dir, and a digest
    of their folders when some lie elsewhere or the name would be long."""
    if out is not None:
        return Path(out)
    stem = FIGURES[kind].removesuffix(".png")
    if selection is None:
        return Path(images_dir) / FIGURES[kind]
    labels = [label.replace("/", "_") for label in unique_labels(selection, models_dir).values()]
    derived = "+".join(labels)
    root = Path(models_dir).resolve()
    if len(derived) > 60 or any(inside(d, root) in (None, ".") for d in selection):
        folders = sorted(os.path.abspath(d) for d in selection)
        digest = hashlib.sha256("\n".join(folders).encode()).hexdigest()[:8]
        derived = f"{derived if len(derived) <= 60 else labels[0][:40] + '+more'}-{digest}"
    return Path(images_dir) / f"{stem}_{derived}.png"
