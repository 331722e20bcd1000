"""The Typer app and what every command shares: one-line errors, help, --version, output.

Errors from the core (RegcliError, UsageError) and from argument parsing become one line on
stderr and an exit code: 2 for bad usage, 1 for a runtime failure. REGCLI_DEBUG=1 shows the
full traceback instead. Results go to stdout; progress, "wrote ..." lines and errors to stderr.
Names read from disk are printed terminal-safe.
"""

import os
import shlex
import sys
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from regcli import __version__
from regcli.cli.console import model_progress, stderr, stdout
from regcli.core.errors import Interrupted, RegcliError, RegcliWarning
from regcli.core.files import to_json
from regcli.core.text import terminal_safe
from regcli.store.layout import model_label

DEBUG_ENV = "REGCLI_DEBUG"
invocation: ContextVar[tuple[str, ...]] = ContextVar("invocation", default=())  # args as typed


class OneLineErrors(TyperGroup):
    """Report every expected failure as `error: ...` on one line, without a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        invocation.set(tuple(args))
        warnings.showwarning = show_warning
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # bare `regcli`: the help was shown
                code = 0
            else:
                code = fail(error.format_message(), error, getattr(error, "exit_code", 2))
        except (RegcliError, OSError) as error:
            code = fail(str(error), error, getattr(error, "exit_code", 1))
        except KeyboardInterrupt as error:
            code = fail("stopped by Ctrl-C", error, 130, "interrupted")
        except typer.Abort:
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """regcli's own warnings as one `warning:` line; any other as Python shows it."""
    if issubclass(category, RegcliWarning):
        stderr.print(f"warning: {terminal_safe(str(message))}", markup=False)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def fail(message: str, error: BaseException, code: int, prefix: str | None = None) -> int:
    if os.environ.get(DEBUG_ENV):
        raise error
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    line = line.replace("Value error, ", "")  # the parser's own wording, not the user's
    line = terminal_safe(line)  # names from disk cannot forge output or reach the terminal
    stderr.print(f"{prefix or getattr(error, 'prefix', 'error')}: {line}", markup=False)
    return code


def _help_type(original):
    """Flags show as flags in --help and a list of paths as <path>... (not <bool>, <list[Path]>)."""

    def display_type(self, ctx):
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        label = original(self, ctx)
        return label.replace("list[Path]", "path").replace("<Path>", "<path>") if label else label

    return display_type


for _kind in (TyperOption, TyperArgument):
    if hasattr(_kind, "display_type_rich"):  # Typer >= 0.2x shows a type column in --help
        _kind.display_type_rich = _help_type(_kind.display_type_rich)

app = typer.Typer(
    cls=OneLineErrors,
    help="What do L1 and L2 regularization do to a small CNN? Train, compare, export MNIST models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        stdout.print(f"regcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
):
    """regcli: train an MNIST CNN with none, L1, L2 or L1+L2 regularization and compare them."""


# --- output -----------------------------------------------------------------------------------


def print_json(data) -> None:
    stdout.print(to_json(data), markup=False, highlight=False, soft_wrap=True)


def print_line(text: str) -> None:
    """Results on stdout, terminal-safe (tables hold names read from disk); tabs and newlines
    are the output's own."""
    lines = str(text).split("\n")
    safe = "\n".join("\t".join(map(terminal_safe, line.split("\t"))) for line in lines)
    stdout.print(safe, markup=False, highlight=False)


def command_line() -> list[str]:
    """This command as it was typed, for run records."""
    return ["regcli", *invocation.get()]


def each_model(dirs: list[Path], what: str, quiet: bool, work) -> tuple[list, int]:
    """work(model_dir) for every model, with a bar of models done / total and time left. A model
    that fails is one error line and the others go on (a lone model's error is the command's).
    Returns the results and how many failed."""
    results, failed = [], 0
    with model_progress(len(dirs), what, quiet) as advance:
        for model_dir in dirs:
            try:
                results.append(work(model_dir))
            except RegcliError as error:
                if len(dirs) == 1:
                    raise
                failed += 1
                stderr.print(f"error: {terminal_safe(str(error))}", markup=False)
            finally:
                advance(model_label(model_dir))
    return results, failed


def exit_if(failed: int, code: int = 1) -> None:
    if failed:
        raise typer.Exit(code)


def say_failures(outcomes) -> int:
    """An `error:` line per run of a job that failed (its group's error; the others went on);
    returns the exit code they call for (0: none failed)."""
    codes = []
    for outcome in outcomes:
        if outcome.error:
            stderr.print(f"error: {terminal_safe(outcome.failure())}", markup=False)
            codes.append(outcome.code)
    return max(codes, default=0)


# --- how to go on after an interruption ----------------------------------------------------------


def again(args: list[str], *, name: str | None = None, add: tuple[str, ...] = ()) -> str:
    """The command as typed, without --force/--resume (and --name, if a name is given)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--force", "--resume"):
            continue
        elif name and arg == "--name":
            skip = True
        elif not (name and arg.startswith("--name=")):
            kept.append(arg)
    return shlex.join(["regcli", *kept, *(["--name", name] if name else []), *add])


def continue_hint(stopped: Interrupted, *, automatic: bool, versioned: bool) -> str:
    """The one message of an interrupted job: what was kept and the command that goes on.
    automatic: the same command continues (seed groups and sweeps); versioned: the job chose
    its folder's name, so the command names it."""
    args = list(invocation.get())
    name = stopped.folder if versioned else None
    if automatic:
        hint = f"continue with: {again(args, name=name)}"
    elif stopped.epochs_saved:
        hint = f"resume with: {again(args, name=name, add=('--resume',))}"
    else:
        extra = ("--force",) if stopped.needs_force else ()
        hint = f"start again with: {again(args, name=name, add=extra)}"
    return f"{stopped}; {hint}"
