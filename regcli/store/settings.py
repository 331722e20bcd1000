"""Where a job's settings come from, in order of precedence: TrainConfig's defaults, then a
`--config` file (TOML) or a saved run's folder, then the options typed on the command line.

A TOML file is read bounded, like every file, and may hold only TrainConfig's settings (and the
extra tables a command allows, such as a sweep's `[sweep]`); an unknown setting, or one that
belongs elsewhere, is an error naming it. A folder stands for its saved run, or for its seeds,
whose settings (the seed aside) must agree.
"""

import json
import tomllib
from pathlib import Path

from regcli.core.config import FIELD_NAMES, HELP, PRUNE_FIELDS, TrainConfig, check_same_settings
from regcli.core.errors import UsageError
from regcli.core.files import FileProblem, read_text
from regcli.store.layout import METRICS_NAME, seed_dirs
from regcli.store.records import load_metrics


def folder_settings(folder: Path) -> dict:
    """`--config models/<name>`: a saved run's settings; a folder of seed-<k> folders stands for
    its seeds, whose settings (the seed aside) must agree."""
    if (folder / METRICS_NAME).is_file():
        return dict(load_metrics(folder)["config"])
    seeds = [p for p in seed_dirs(folder) if (p / METRICS_NAME).is_file()]
    if not seeds:
        raise UsageError(f"--config {folder}: no saved run there (no {METRICS_NAME})")
    configs = [(str(p), TrainConfig.from_dict(load_metrics(p)["config"])) for p in seeds]
    check_same_settings(configs, f"--config {folder}")
    return {k: v for k, v in configs[0][1].as_dict().items() if k != "seed"}


def read_settings(
    path: Path, tables: tuple[str, ...] = (), elsewhere: dict[str, str] | None = None
) -> tuple[dict, dict]:
    """`--config`: TrainConfig settings from a TOML file (and its allowed extra tables), or the
    config of a saved run from its folder. Unknown settings are an error naming them, and so
    are settings that belong elsewhere (`elsewhere`: setting -> where it goes)."""
    path = Path(path)
    if path.is_dir():
        return folder_settings(path), {}
    try:
        text = read_text(path)
    except FileProblem as error:
        raise UsageError(f"--config {error}") from None
    data = check_keys(parse_toml(text, str(path)), (*FIELD_NAMES, *tables), str(path))
    for key, where in (elsewhere or {}).items():
        if key in data:
            raise UsageError(f"{path}: {key} belongs in {where}")
    extra = {table: data.pop(table, {}) for table in tables}
    for table, values in extra.items():
        if not isinstance(values, dict):
            raise UsageError(f"{path}: [{table}] must be a table of settings, got {values!r:.40}")
    return data, extra


def resolve(
    config_file: Path | None,
    typed: dict,
    tables: tuple[str, ...] = (),
    elsewhere: dict[str, str] | None = None,
) -> tuple[dict, dict]:
    """TrainConfig settings: the defaults, then --config, then `typed` (the options given on
    the command line). Returns (settings, the file's extra tables)."""
    from_file, extra = read_settings(config_file, tables, elsewhere) if config_file else ({}, {})
    try:  # the file's own settings, checked on their own: an error names the file
        TrainConfig.from_dict({**TrainConfig().as_dict(), **from_file})
    except UsageError as error:
        raise UsageError(f"{config_file}: {error}") from None
    pruned = [k for k in PRUNE_FIELDS if from_file.get(k, DEFAULTS[k]) != DEFAULTS[k]]
    if pruned:
        raise UsageError(
            f"{config_file}: {', '.join(pruned)} describe a pruned run, which starts from another "
            "model's weights: `regcli prune --retrain` makes those"
        )
    return layered(DEFAULTS, from_file, typed), extra


DEFAULTS = TrainConfig().as_dict()


def layered(defaults: dict, from_file: dict, typed: dict) -> dict:
    """The one precedence rule, for TrainConfig's settings and a sweep's grid alike: the
    defaults, then a config file's values, then the options typed on the command line."""
    return {**defaults, **from_file, **typed}


def shown(settings: dict) -> dict:
    """Settings as `--print-config` shows them: a pruned run's own fields only when set."""
    return {k: v for k, v in settings.items() if k not in PRUNE_FIELDS or v != DEFAULTS[k]}


# --- TOML: reading a file's settings, writing them back (`--print-config`) ---------------


def parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{source}: not valid TOML ({error})") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise UsageError(f"{source}: not a config file (values nested too deeply)") from None


def check_keys(data: dict, allowed: tuple[str, ...], source: str) -> dict:
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise UsageError(f"{source}: unknown setting {unknown[0]!r}; known: {', '.join(allowed)}")
    return data


def toml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)  # strings, ints and bools read back identically in TOML


def config_toml(settings: dict, tables: dict[str, dict] | None = None, title: str = "") -> str:
    """Settings as TOML, each with its meaning and unit as a comment; an unset one (None) as a
    commented-out line, so that every setting is shown and the text still reads back."""

    def lines(values: dict) -> list[str]:
        out = []
        for name, value in values.items():
            if value is not None:
                line = f"{name} = {toml_value(value)}"
                out.append(f"{line:<28} # {HELP[name]}" if name in HELP else line)
            elif name in HELP:  # unset (TOML has no null): shown, commented out
                out.append(f"{f'# {name} = (unset)':<28} # {HELP[name]}")
        return out

    text = [f"# {title}"] if title else []
    text += lines(settings)
    for table, values in (tables or {}).items():
        text += ["", f"[{table}]", *lines(values)]
    return "\n".join(text) + "\n"
