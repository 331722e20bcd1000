"""Options declared once: the shared `Annotated` types, TrainConfig's settings as options, and
the run options, each group added to the commands that take it by one decorator.

A TrainConfig field becomes an option of `train` and `sweep` by itself (its help is the field's
meaning and unit, its default the field's default); `PANELS` says under which help panel it
shows. A run setting is one field of config.RunOptions and one entry in RUN_OPTIONS here.
"""

import functools
import inspect
from dataclasses import fields
from pathlib import Path
from typing import Annotated, get_args

import typer

from regcli.core.config import (
    CHOICES,
    HELP,
    MAX_JOBS,
    MAX_THREADS,
    PRUNE_FIELDS,
    Backend,
    Device,
    Existing,
    RunOptions,
    TrainConfig,
)
from regcli.core.errors import UsageError
from regcli.store.layout import CHECKPOINT_NAME, USER_FIGURES, folders_holding
from regcli.store.settings import resolve

# help panels (`--help` groups options under these headings)
REGULARIZATION, SCHEDULE, DATA, RUN, OUTPUT = "Regularization", "Schedule", "Data", "Run", "Output"
DEVICE, GPU = "Device and speed", "On a GPU"  # where a job trains, and how fast
PANELS = {  # TrainConfig field -> panel (a field not listed shows under "Schedule")
    "l1": REGULARIZATION,
    "weight_decay": REGULARIZATION,
    "reg_scope": REGULARIZATION,
    "dropout": REGULARIZATION,
    "max_rotation": DATA,
    "limit_train": DATA,
    "limit_test": DATA,
    "seed": DATA,
    "train_size": DATA,
    "val_size": DATA,
}


def complete_models(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for model arguments: the folders under --models-dir that hold a model."""
    root = Path(ctx.params.get("models_dir") or "models")
    found = folders_holding(root, (CHECKPOINT_NAME,)) if root.is_dir() else []
    return [str(p) for p in found if str(p).startswith(incomplete)]


# --- options shared by several commands --------------------------------------------------------

ModelsDir = Annotated[
    Path, typer.Option(help="Where models live: <models-dir>/<name>/.", rich_help_panel=RUN)
]
ImagesDir = Annotated[Path, typer.Option(help="Where figures are written.", rich_help_panel=OUTPUT)]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="MNIST IDX files (also in <dir>/MNIST/raw). Default: $REGCLI_DATA_DIR, else ./data.",
        show_default=False,
        rich_help_panel=DATA,
    ),
]
ModelsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Model folders (a folder of seed-<k> folders stands for its seeds). "
        "Default: every model under --models-dir.",
        show_default=False,
        autocompletion=complete_models,
    ),
]
ModelArg = Annotated[
    Path, typer.Argument(help="A model folder (or its model.pt).", autocompletion=complete_models)
]
BackendOption = Annotated[Backend, typer.Option(help="Inference backend.")]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table.", rich_help_panel=OUTPUT)
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress or 'wrote' lines.", rich_help_panel=OUTPUT),
]
OutFigure = Annotated[
    Path | None,
    typer.Option(
        help="Figure path. Default: the study's name for every model, else a name derived "
        "from the models given.",
        show_default=False,
        rich_help_panel=OUTPUT,
    ),
]
DeviceOption = Annotated[Device, typer.Option(help="Training device.", rich_help_panel=DEVICE)]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace finished models (or abandon interrupted runs) there.",
        rich_help_panel=RUN,
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings from a TOML file (see --print-config) or a saved model folder; "
        "options given on the command line win.",
        show_default=False,
        rich_help_panel=RUN,
    ),
]
PrintConfig = Annotated[
    bool,
    typer.Option(
        "--print-config", help="Print the resolved settings as TOML and exit.", rich_help_panel=RUN
    ),
]


# --- option groups: declared once, added to each command that takes them -----------------------


class Group:
    """Options that several commands share: name -> (annotation, default)."""

    def __init__(self, options: dict[str, tuple]):
        self.options = options

    def parameters(self) -> list[inspect.Parameter]:
        kind = inspect.Parameter.KEYWORD_ONLY
        return [
            inspect.Parameter(name, kind, annotation=annotation, default=default)
            for name, (annotation, default) in self.options.items()
        ]


def with_options(*groups: Group):
    """Add the groups' options to a command; it receives their values as one dict, `given`."""

    def decorate(command):
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "given"]
        names = [name for group in groups for name in group.options]

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            given = {name: kwargs.pop(name) for name in names}
            return command(*args, given=given, **kwargs)

        extra = [p for group in groups for p in group.parameters()]
        wrapper.__signature__ = signature.replace(parameters=own + extra)
        return wrapper

    return decorate


def setting(name: str, **extra) -> tuple:
    """A TrainConfig field as an option: its help (meaning and unit) and its default."""
    field = next(f for f in fields(TrainConfig) if f.name == name)
    kind = CHOICES.get(name, field.type)
    default = getattr(TrainConfig, name)
    if name in CHOICES:
        default = CHOICES[name](default)
    optional = type(None) in get_args(field.type)
    text = HELP[name][:1].upper() + HELP[name][1:] + "."
    panel = PANELS.get(name, SCHEDULE)
    option = typer.Option(help=text, show_default=not optional, rich_help_panel=panel, **extra)
    return Annotated[kind, option], default


def training(*names: str) -> Group:
    """TrainConfig's settings as options: the given ones, or every one but the grid's."""
    own = (*GRID_FIELDS, *PRUNE_FIELDS)  # the sweep's, and `regcli prune`'s own
    chosen = names or [f.name for f in fields(TrainConfig) if f.name not in own]
    return Group({name: setting(name) for name in chosen})


GRID_FIELDS = ("l1", "weight_decay", "seed", "train_size")  # what a sweep varies (its own options)
STRENGTHS = training(*GRID_FIELDS)  # train's: one strength pair and one seed
TRAINING = training()  # every other TrainConfig setting, for train and sweep
JOBS_ENV = "REGCLI_JOBS"  # --jobs for every command of a shell (a busy shared machine, say)
THREADS_ENV = "REGCLI_THREADS"  # --threads the same way


def count_option(help_text: str, envvar: str, most: int):
    """A CPU count option (--jobs, --threads): a number of at least 1, settable per shell."""
    return Annotated[
        int | None,
        typer.Option(
            help=help_text,
            envvar=envvar,
            show_default=False,
            min=1,
            max=most,
            metavar="<int>",
            rich_help_panel=DEVICE,
        ),
    ]


Jobs = count_option(
    "On a CPU: processes that train models side by side, one model each. Default: one per "
    "core, for a job long enough to pay for starting them (make bench).",
    JOBS_ENV,
    MAX_JOBS,
)
Threads = count_option(
    "On a CPU: threads per model. Default: 1, which gives a model the same numbers in every "
    "layout and never spins against other work: on a busy machine faster than every core, on "
    "a quiet one a little slower (make bench).",
    THREADS_ENV,
    MAX_THREADS,
)
RUN_OPTIONS = Group(
    {
        "device": (DeviceOption, Device.auto),
        "group_size": (
            Annotated[
                int | None,
                typer.Option(
                    help="Models trained at once as one grouped network. Default: all that fit "
                    "on a GPU, one at a time on a CPU (measured faster there).",
                    show_default=False,
                    min=1,
                    metavar="<int>",
                    rich_help_panel=DEVICE,
                ),
            ],
            None,
        ),
        "jobs": (Jobs, None),
        "threads": (Threads, None),
        "deterministic": (
            Annotated[
                bool,
                typer.Option(
                    help="On a GPU: deterministic cuDNN kernels (the same seed gives the same "
                    "numbers, and --resume continues bit for bit); --no-deterministic lets cuDNN "
                    "pick the fastest.",
                    rich_help_panel=GPU,
                ),
            ],
            True,
        ),
        "models_dir": (ModelsDir, Path("models")),
        "images_dir": (ImagesDir, USER_FIGURES),
        "data_dir": (DataDir, None),
        "config": (ConfigFile, None),
        "print_config": (PrintConfig, False),
        "quiet": (Quiet, False),
    }
)
# what every command that draws one summary figure of some models takes (compare, weights)
SUMMARY_OPTIONS = Group(
    {
        "out": (OutFigure, None),
        "models_dir": (ModelsDir, Path("models")),
        "images_dir": (ImagesDir, USER_FIGURES),
        "json_output": (JsonFlag, False),
        "quiet": (Quiet, False),
    }
)
# the run options that are RunOptions fields (the others are the command's own: --config, ...)
RUN_FIELDS = [f.name for f in fields(RunOptions) if f.name in RUN_OPTIONS.options]


def typed_here(ctx: typer.Context, name: str) -> bool:
    """Whether an option was given on the command line (not left at its default)."""
    return ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")


def settings_from(ctx: typer.Context, given: dict, **extra) -> tuple[dict, dict]:
    """TrainConfig settings: defaults < --config < options typed here; and the file's tables."""
    typed = {
        k: getattr(v, "value", v) for k, v in given.items() if k in HELP and typed_here(ctx, k)
    }
    return resolve(given["config"], typed, **extra)


def existing(*, force: bool, resume: bool, reuse: bool) -> Existing:
    """What the job does with folders that already hold a run, from --force and --resume."""
    if force and resume:
        raise UsageError("--force and --resume contradict each other; choose one")
    if resume and reuse:
        raise UsageError(
            "--seeds and --variants resume interrupted runs by themselves; drop --resume"
        )
    if force:
        return Existing.force
    if resume:
        return Existing.resume
    return Existing.reuse if reuse else Existing.fail


def run_options(given: dict, existing_folder: Existing, command: list[str], **extra) -> RunOptions:
    """The job's RunOptions from the run options given (and the command as typed)."""
    chosen = {k: getattr(given[k], "value", given[k]) for k in RUN_FIELDS}
    settings = {**chosen, "existing": existing_folder, "command": tuple(command), **extra}
    return RunOptions(**settings)
