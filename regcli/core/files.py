"""Every file regcli reads or writes goes through here: bounded reads, atomic writes, JSON,
streamed hashes, and the generated sections of a Markdown file.

Reads: only regular files (a FIFO would block forever, a device can be endless), checked before
and after opening, and never more than a stated number of bytes, so a tiny hostile input (a
link to /dev/zero, an 8 GB sparse file) costs nothing. Writes: to a temporary file in the
target's folder, renamed over the target with os.replace only on success, so a killed process
leaves the old file or the new one, never half of one; a target that is a link (or anything but a
regular file) is refused, never replaced or written through; an existing file keeps its mode.
Nothing here loads PyTorch.
"""

import csv
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from regcli.core.errors import RegcliError
from regcli.core.text import shown, terminal_safe

SMALL_FILE_BYTES = 8 * 2**20  # config, metrics.json, README, caches: kilobytes; 8 MiB is generous
MODEL_FILE_BYTES = 64 * 2**20  # model.pt ~50 KB, last.pt ~150 KB, model.onnx ~60 KB
NEW_FILE_MODE = 0o644  # what a new artifact gets (an existing file keeps its own mode)
HASH_CHUNK = 1 << 20  # bytes hashed at a time
TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp")  # .<name>.<pid>.<rand>.tmp


class FileProblem(RegcliError):
    """A file that cannot be read as asked (missing, not a regular file, too large)."""


def file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def reason(error: OSError) -> str:
    return error.strerror or str(error)


@contextmanager
def open_regular(path: Path | str, limit: int | None, label: str | None = None) -> Iterator:
    """A regular file of at most `limit` bytes (None: any size), opened for reading; anything
    else is FileProblem, its message naming the file as `label` (default: the path).

    os.stat comes first because merely opening a FIFO blocks until a writer appears, and opening
    a device can have effects; the open itself is non-blocking and checked again with fstat, so
    a file swapped in between is refused.
    """
    path, name = Path(path), label or str(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise FileProblem(f"{name}: not a regular file ({file_kind(mode)}); not read")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        if os.path.islink(path):
            target = terminal_safe(shown(os.readlink(path)))
            message = f"{name}: dangling symlink (its target {target} does not exist)"
            raise FileProblem(message) from None
        raise FileProblem(f"{name}: no such file") from None
    except OSError as error:
        raise FileProblem(f"{name}: cannot read ({reason(error)})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(f"{name}: not a regular file ({file_kind(info.st_mode)}); not read")
        if limit is not None and info.st_size > limit:
            raise FileProblem(
                f"{name}: {info.st_size:,} bytes, over the {limit:,}-byte limit for this file; "
                "not read"
            )
        os.set_blocking(fd, True)
        yield f


def read_bytes(path: Path | str, limit: int = SMALL_FILE_BYTES) -> bytes:
    """The whole file, if it is a regular file of at most `limit` bytes."""
    with open_regular(path, limit) as f:
        try:
            data = f.read(limit + 1)
        except OSError as error:
            raise FileProblem(f"{path}: cannot read ({reason(error)})") from None
    if len(data) > limit:
        raise FileProblem(f"{path}: grew past the {limit:,}-byte limit while being read")
    return data


def read_text(path: Path | str, limit: int = SMALL_FILE_BYTES) -> str:
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(f"{path}: not UTF-8 text") from None


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON can hold")


def read_json(path: Path | str, limit: int = SMALL_FILE_BYTES):
    """A small JSON file; NaN and infinities are refused, as strict JSON readers do."""
    try:
        return json.loads(read_text(path, limit), parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:
        raise FileProblem(f"{path}: not valid JSON ({str(error)[:200]})") from None


def sha256_file(path: Path | str, limit: int = MODEL_FILE_BYTES) -> str:
    """The sha256 of a regular file, read in chunks."""
    digest = hashlib.sha256()
    with open_regular(path, limit) as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- writing ----------------------------------------------------------------------------------


def writable_target(path: Path) -> int | None:
    """The mode of the regular file at path (None if absent); anything else is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RegcliError(f"cannot write {path}: {reason(error)}") from None
    if stat.S_ISLNK(info.st_mode):
        raise RegcliError(
            f"cannot write {path}: it is a symbolic link, and regcli never writes through or "
            "replaces links; write to its target, or remove the link"
        )
    if not stat.S_ISREG(info.st_mode):
        raise RegcliError(f"cannot write {path}: it is {file_kind(info.st_mode)}")
    return stat.S_IMODE(info.st_mode)


def remove_dead_temporaries(path: Path) -> None:
    """Temporary files that killed writers of `path` left beside it (their process is gone)."""
    with suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            match = TEMPORARY.fullmatch(entry.name)
            if match and match["name"] == path.name and not alive(int(match["pid"])):
                with suppress(OSError):
                    os.unlink(entry.path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writable_target(path)  # a link or a special file is refused before any work
        remove_dead_temporaries(path)
        prefix = f".{path.name}.{os.getpid()}."
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except OSError as error:
        raise RegcliError(f"cannot write {path}: {reason(error)}") from error
    text_options = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(fd, mode, **text_options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        now = writable_target(path)  # again: the target may have been swapped meanwhile
        os.chmod(temporary, NEW_FILE_MODE if now is None else now)
        os.replace(temporary, path)
    except OSError as error:
        with suppress(OSError):
            os.unlink(temporary)
        raise RegcliError(f"cannot write {path}: {reason(error)}") from error
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def ensure_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written in it (the probe's name is
    this process's own, so that two jobs writing into one folder never remove each other's)."""
    probe = Path(folder) / f".write-test.{os.getpid()}"
    with atomic_open(probe) as f:
        f.write(b"")
    os.unlink(probe)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def to_json(data, indent: int = 2) -> str:
    """JSON with every list of plain numbers or strings on one line (a confusion matrix is ten
    lines, not a hundred); NaN and infinities are refused, as strict JSON readers do."""

    def compact(value, depth: int) -> str:
        pad, inner = " " * (indent * depth), " " * (indent * (depth + 1))
        if isinstance(value, dict) and value:
            items = [
                f"{inner}{json.dumps(str(k))}: {compact(v, depth + 1)}" for k, v in value.items()
            ]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        if isinstance(value, list | tuple) and value:
            if all(not isinstance(v, dict | list | tuple) for v in value):
                return json.dumps(list(value), allow_nan=False)
            return (
                "[\n" + ",\n".join(f"{inner}{compact(v, depth + 1)}" for v in value) + f"\n{pad}]"
            )
        return json.dumps(value, allow_nan=False)

    return compact(data, 0)


def write_json(path: Path, data) -> None:
    text = to_json(data)  # before opening: a value JSON cannot hold must not cost the old file
    with atomic_open(path, "w") as f:
        f.write(text + "\n")


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def can_write(path: Path) -> bool:
    """Whether this process may write the file (or, for a folder, create files in it)."""
    return os.access(path, os.W_OK)


# --- generated sections of a Markdown file ------------------------------------------------------

MARKER = re.compile(r"<!-- (?P<section>[A-Za-z0-9_-]+):(?P<end>start|end)\b[^>]*-->")


def readme_markers(section: str, generator: str) -> tuple[str, str]:
    """The two comments around a generated section of a Markdown file."""
    start = f"<!-- {section}:start (generated by `{generator}`; do not edit) -->"
    return start, f"<!-- {section}:end -->"


def check_readme(readme: Path, sections: list[tuple[str, str]]) -> str:
    """The README's text, after checking that it can be rewritten: a regular, writable file
    whose every generated section (each `(section, generator)` asked for, and any other it
    holds) has its start and end marker once, in order, none inside or across another."""
    readme = Path(readme)
    content = read_text(readme)
    writable_target(readme)
    if not can_write(readme) or not can_write(readme.parent):
        raise RegcliError(f"cannot write {readme}: permission denied (checked before any work)")
    open_section = None
    seen = set()
    for match in MARKER.finditer(content):
        name, is_end = match["section"], match["end"] == "end"
        if not is_end and open_section is None and name not in seen:
            open_section = name
        elif is_end and open_section == name:
            seen.add(name)
            open_section = None
        else:
            raise RegcliError(
                f"{readme}: its generated sections' markers are out of order or nested "
                f"(found {terminal_safe(match.group())} at character {match.start()}); "
                "each section needs one start marker, then its end marker"
            )
    if open_section is not None:
        raise RegcliError(
            f"{readme}: its generated section {terminal_safe(open_section)} has a start marker "
            "but no end marker; add the end marker (or remove the start) first"
        )
    missing = [s for s, _ in sections if s not in seen]
    for section, generator in sections:
        start, end = readme_markers(section, generator)
        if section in missing or content.count(start) != 1 or content.count(end) != 1:
            raise RegcliError(
                f"{readme}: needs the {section} markers once each, start before end "
                f"({start} ... {end})"
            )
    return content


def update_readme(readme: Path, texts: dict[tuple[str, str], str]) -> None:
    """Replace generated sections of a Markdown file, (section, generator) -> text, in one
    write: only what lies between each section's two markers changes."""
    content = check_readme(readme, list(texts))
    for (section, generator), text in texts.items():
        start, end = readme_markers(section, generator)
        before, rest = content.split(start, 1)
        after = rest.split(end, 1)[1]
        content = f"{before}{start}\n{text}\n{end}{after}"
    write_bytes(readme, content.encode())
