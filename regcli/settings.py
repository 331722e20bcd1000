"""Where a job's settings come from, in order of precedence: TrainConfig's defaults, then a
`--config` file (TOML) or a saved run's folder, then the options typed on the command line.

A TOML file is read bounded, like every file, and may hold only TrainConfig's settings (and the
extra tables a command allows, such as a sweep's `[sweep]`); an unknown setting, or one that
belongs elsewhere, is an error naming it. A folder stands for its saved run, or for its seeds,
whose settings (the seed aside) must agree.
"""

from pathlib import Path

from regcli.config import FIELD_NAMES, TrainConfig, check_keys, check_same_settings, parse_toml
from regcli.errors import UsageError
from regcli.files import FileProblem, read_text
from regcli.layout import seed_dirs
from regcli.records import METRICS_NAME, load_metrics


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
    return {**TrainConfig().as_dict(), **from_file, **typed}, extra
