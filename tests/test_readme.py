"""The README's CLI section runs as written on a fresh clone (with tiny training settings added),
so the README cannot drift from the tool; and its facts about the network are the network's."""

import re
import shlex
import shutil
from pathlib import Path

from regcli.nn.model import Net, count_parameters, layer_summary
from tests.conftest import REPO, TINY, invoke


def cli_section() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## The CLI at a glance", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def as_run(line: str) -> tuple[list[str], str | None]:
    """The line's arguments (training commands get tiny settings; options given later win) and
    the file its output is redirected to, if any."""
    command, _, target = line.partition(" > ")
    words = shlex.split(command, comments=True)
    assert words[0] == "regcli", line
    no_training = {"--print-config", "--dry-run", "--report"} & set(words)
    if words[1] in ("train", "sweep") and not no_training:
        # a class-balanced subset is its own size: tiny by one short epoch, not --limit-train
        words += TINY_SUBSET if "--train-size" in words else TINY
    return words[1:], (shlex.split(target, comments=True) or [None])[0]


TINY_SUBSET = ["--epochs", "1", "--min-steps", "0", "--limit-test", "128", "--device", "cpu"]
SWEEP_SAMPLE = ("l1-0_wd-0", "l1-0.001_wd-0", "l1-0_wd-0.001")  # three cells, two seeds each


def fresh_clone(root: Path) -> Path:
    """A working folder laid out like a clone: the shipped data and samples, the committed
    four variants, and part of the committed sweep (every command over all models stays quick)."""
    for name in ("data", "samples"):
        (root / name).symlink_to(REPO / name)
    for name in ("none", "l1", "l2", "l1_l2"):
        shutil.copytree(
            REPO / "models" / name, root / "models" / name, ignore=shutil.ignore_patterns("seed-*")
        )
    for cell in SWEEP_SAMPLE:
        for seed in ("seed-0", "seed-1"):
            shutil.copytree(
                REPO / "models" / "sweep" / cell / seed, root / "models" / "sweep" / cell / seed
            )
    return root


def test_every_readme_cli_line_runs_as_written(tmp_path, monkeypatch):
    lines = cli_section()
    assert len(lines) >= 15 and all(line.startswith("regcli ") for line in lines)
    monkeypatch.chdir(fresh_clone(tmp_path))
    for line in lines:
        args, target = as_run(line)
        result = invoke(*args)
        assert result.exit_code == 0, (line, result.output[-2000:])
        assert "Traceback" not in result.output, line
        if target:
            Path(target).write_text(result.stdout)
    # what the lines promise
    assert (tmp_path / "models" / "l1_l2-1" / "model.pt").is_file()  # l1_l2 is committed
    assert (tmp_path / "models" / "from-file" / "model.onnx").is_file()
    assert (tmp_path / "figures" / "weights_compare_none+l1.png").is_file()
    assert (tmp_path / "predictions.csv").read_text().count("\n") >= 18


def test_the_readme_describes_the_network_that_exists():
    readme = " ".join((REPO / "README.md").read_text().split())  # lines wrap anywhere
    parameters = count_parameters(Net())
    assert f"{parameters:,}-parameter" in readme and f"{parameters:,} parameters" in readme
    field = layer_summary(Net())[-4]["receptive_field"]  # before the global pooling
    assert f"receptive field {field} pixels" in readme
    assert re.search(r"dropout 0\.05", readme)
    from regcli.core.config import MNIST_MEAN, MNIST_STD, TrainConfig
    from regcli.inference.predict import MAX_PIXELS
    from regcli.train.augment import RandomRotation
    from regcli.train.epochs import DIVERGED_LOSS

    assert f"(mean {MNIST_MEAN}, std {MNIST_STD})" in readme
    defaults = TrainConfig()
    for fact in (
        f"peak `--lr {defaults.lr:g}`",
        f"batch {defaults.batch_size}",
        f"{defaults.epochs} epochs",
        f"+-{defaults.max_rotation:g} degrees",
        f"dropout {defaults.dropout:g}",
    ):
        assert fact in readme, fact
    assert f"{len(RandomRotation(7.0).angles)} angles" in readme
    from regcli.cli.console import PERIODIC_SECONDS

    assert f"a progress line comes every {PERIODIC_SECONDS:g} seconds" in readme
    assert f"up to {MAX_PIXELS / 1e6:g} megapixels" in readme
    from regcli.inference.preprocess import BLOB_SHARE
    from regcli.train.devices import CPU_THREADS

    assert f"(`--threads`, {CPU_THREADS} by default," in readme
    assert f"at least {({0.25: 'a quarter', 0.5: 'half'})[BLOB_SHARE]} the size" in readme
    assert f"cross-entropy above {DIVERGED_LOSS:,.0f}" in readme


def test_the_readme_states_the_limits_on_hostile_files_as_the_code_has_them():
    readme = " ".join((REPO / "README.md").read_text().split())
    from regcli.core.config import MAX_LR, MAX_STRENGTH
    from regcli.core.files import MODEL_FILE_BYTES, SMALL_FILE_BYTES
    from regcli.inference.preprocess import FLATTEN_FROM
    from regcli.jobs.sweep import MAX_CELLS, MAX_MODELS, MAX_POINTS
    from regcli.store.layout import MAX_DEPTH, MAX_NAME_LENGTH

    for fact in (
        f"caches up to {SMALL_FILE_BYTES // 2**20} MiB",
        f"ONNX files up to {MODEL_FILE_BYTES // 2**20} MiB",
        f"`--weight-decay` in 0..{MAX_STRENGTH:g}",
        f"`--lr` up to {MAX_LR:.0e}".replace("e+0", "e"),
        f"at most {MAX_POINTS} strengths per option, {MAX_CELLS} cells and {MAX_MODELS:,} models",
        f"`--name` is at most {MAX_NAME_LENGTH} characters",
        f"at most {MAX_DEPTH} folders below `--models-dir`",
        f"a photo of {FLATTEN_FROM} px or more",
    ):
        assert fact in readme, fact
