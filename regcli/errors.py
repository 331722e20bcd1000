"""The two kinds of failure regcli reports to a user, each with its exit code.

Core modules raise these with a message meant for a person; the CLI prints the message as one
line on stderr and exits with the code. Anything else is a bug and keeps its traceback.
"""


class RegcliError(Exception):
    """A runtime failure the user can act on (missing file, corrupt data, divergence)."""

    exit_code = 1


class UsageError(RegcliError):
    """The command was asked for something that makes no sense (negative strength, zero epochs)."""

    exit_code = 2
