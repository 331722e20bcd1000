"""The kinds of failure regcli reports to a user, each with its exit code.

Core modules raise these with a message meant for a person; the CLI prints the message as one
line on stderr and exits with the code. Anything else is a bug and keeps its traceback.
"""


class RegcliError(Exception):
    """A runtime failure the user can act on (missing file, corrupt data, divergence)."""

    exit_code = 1
    prefix = "error"  # how the CLI starts the line it prints


class UsageError(RegcliError):
    """The command was asked for something that makes no sense (negative strength, zero epochs)."""

    exit_code = 2


class Interrupted(RegcliError):
    """Work stopped at a safe point on SIGINT or SIGTERM; exit 128 + signal number.

    The runner fills in what was kept (`epochs_saved`, `folder`, `needs_force`) in one place,
    and the CLI turns them into the command that goes on (see cli/app.py, `continue_hint`).
    """

    prefix = "interrupted"

    def __init__(
        self,
        message: str,
        signal_number: int,
        *,
        epochs_saved: int = 0,  # epochs of the interrupted group saved in last.pt
        folder: str | None = None,  # the folder name under --models-dir the job used
        needs_force: bool = False,  # the folders held runs before: starting again needs --force
    ):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
        self.epochs_saved, self.folder, self.needs_force = epochs_saved, folder, needs_force

    def saying(self, message: str) -> "Interrupted":
        """The same interruption told in other words (the CLI's, with the command that goes
        on), what was kept carried along."""
        kept = {"epochs_saved": self.epochs_saved, "folder": self.folder}
        return Interrupted(message, self.signal_number, **kept, needs_force=self.needs_force)


class Locked(RegcliError):
    """Another process is writing to the same model folder."""


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of a library's error message (they can run to pages)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class RegcliWarning(UserWarning):
    """Something the user should know that does not stop the command (a damaged cache that is
    measured again, say): the command line shows it as one `warning:` line on stderr."""
