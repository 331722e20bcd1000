"""One writer per model folder: an OS lock (flock) on the folder's .lock file.

The OS drops the lock when the process dies, so a SIGKILL leaves nothing stale. The file names
its holder, so a second writer can say who has the model. On release the file is removed; an
acquirer checks that the file it locked is still the one on disk, so removing it never lets two
writers in. The lock file is opened without following links and must be a regular file, and the
model folder itself must be a real folder (not a link to one elsewhere): a hostile .lock or
seed-<k> link cannot make regcli write outside the models folder; a lock file with a second hard
link is refused too (writing the holder's name would change the other file).
"""

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from regcli.core.errors import Locked, RegcliError
from regcli.core.files import file_kind
from regcli.core.text import natural_key

LOCK_NAME = ".lock"  # held by the one process writing to a model folder
HOLDER_BYTES = 400  # the most of a lock file read to name its holder
NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def real_folder(folder: Path) -> None:
    """Refuse a model folder that is a link (its files would land wherever it points)."""
    with suppress(FileNotFoundError):
        if os.path.islink(folder):
            raise RegcliError(
                f"{folder} is a symbolic link; regcli writes only into real folders under "
                "--models-dir (move the folder there, or remove the link)"
            )


def open_lock_file(path: Path, flags: int) -> int:
    """The lock file's descriptor, never through a link, and only if it is a regular file."""
    try:
        fd = os.open(path, flags | NO_FOLLOW, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP or os.path.islink(path):  # the lock file is a link
            raise RegcliError(
                f"{path} is a symbolic link; regcli never writes through links (remove it)"
            ) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise RegcliError(f"{path} is {file_kind(info.st_mode)}, not a lock file (remove it)")
    if info.st_nlink > 1:  # a hard link: writing the holder's name would change the other file
        os.close(fd)
        raise RegcliError(f"{path} is a hard link to another file, not a lock file (remove it)")
    return fd


class ModelLock:
    """An exclusive lock on a model folder, for one writer's whole life."""

    WAIT_SECONDS = 1.0  # a reader's momentary probe (`regcli runs`) must not fail a writer

    def __init__(self, model_dir: Path, purpose: str):
        self.model_dir, self.purpose = Path(model_dir), purpose
        self.path = self.model_dir / LOCK_NAME
        self.fd: int | None = None
        self.created: list[Path] = []  # folders this lock made, deepest first

    def acquire(self) -> "ModelLock":
        real_folder(self.model_dir)
        self.created = [p for p in (self.model_dir, *self.model_dir.parents) if not p.exists()]
        try:
            self.model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RegcliError(f"cannot write {self.model_dir}: {error.strerror or error}") from None
        deadline = time.monotonic() + self.WAIT_SECONDS
        while True:
            fd = self.open_once()
            if fd is None:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise self.in_use() from None
            if same_file(fd, self.path):
                break
            os.close(fd)  # locked a file its last holder had already removed: try again
        os.ftruncate(fd, 0)
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.write(fd, f"{os.getpid()} {self.purpose} (since {started})\n".encode())
        self.fd = fd
        return self

    def open_once(self) -> int | None:
        try:
            return open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
        except FileNotFoundError:  # the last holder removed the (empty) folder meanwhile
            self.model_dir.mkdir(parents=True, exist_ok=True)
            return None
        except RegcliError:
            self.discard_empty_dir()
            raise
        except OSError as error:
            self.discard_empty_dir()
            raise RegcliError(f"cannot write {self.path}: {error.strerror or error}") from None

    def in_use(self) -> Locked:
        named = self.purpose in ("regcli train", "regcli sweep")
        other = ", or choose another --name" if named else ""
        return Locked(
            f"{self.model_dir} is in use by {lock_holder(self.model_dir)}; "
            f"wait for it to finish{other}"
        )

    def release(self) -> None:
        if self.fd is None:
            return
        with suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)  # closing drops the lock
        self.fd = None
        self.discard_empty_dir()

    def discard_empty_dir(self) -> None:
        """Folders this lock created that nothing else used go again (a failed command leaves
        no empty model folder behind)."""
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:
                return

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.lstat(path).st_ino
    except OSError:
        return False


def lock_holder(model_dir: Path) -> str | None:
    """'process <pid> <purpose> (since ...)' if a live process holds the folder's lock."""
    path = Path(model_dir) / LOCK_NAME
    try:
        fd = open_lock_file(path, os.O_RDONLY)
    except (OSError, RegcliError):  # absent, a link, a FIFO: no live holder to name
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, HOLDER_BYTES).decode(errors="replace").strip()
            return f"process {holder}" if holder else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def locked(model_dirs: list[Path], purpose: str) -> Iterator[None]:
    """Hold the locks of several model folders (in a fixed order), releasing all on exit."""
    held = []
    try:
        for model_dir in sorted(set(map(Path, model_dirs)), key=natural_key):
            held.append(ModelLock(model_dir, purpose).acquire())
        yield
    finally:
        for lock in reversed(held):
            lock.release()
