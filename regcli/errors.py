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
    """Training stopped at a batch boundary on SIGINT or SIGTERM; exit 128 + signal number."""

    prefix = "interrupted"

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class Diverged(RegcliError):
    """A model's loss became NaN, infinite or absurd."""


class Locked(RegcliError):
    """Another process is writing to the same model folder."""


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of a library's error message (they can run to pages)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
