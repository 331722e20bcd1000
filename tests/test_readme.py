"""The README's CLI section runs as written on a fresh clone (with tiny training settings added),
so the README cannot drift from the tool; and its facts about the network are the network's."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from regcli.model import Net, count_parameters, layer_summary
from tests.conftest import REPO

TINY_TRAINING = ["--epochs", "1", "--limit-train", "256", "--limit-test", "128", "--device", "cpu"]


def cli_section() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## The CLI at a glance", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def tiny(line: str) -> str:
    """Training commands get tiny settings (options given later win); others run as written."""
    words = shlex.split(line.split(" > ")[0])
    trains = words[1] in ("train", "sweep") and not {
        "--print-config",
        "--dry-run",
        "--report",
    } & set(words)
    if not trains:
        return line
    return shlex.join(words + TINY_TRAINING) + (
        f" > {line.split(' > ')[1]}" if " > " in line else ""
    )


def fresh_clone(root: Path) -> Path:
    """A working folder laid out like a clone: the shipped data and samples, committed models."""
    for name in ("data", "samples"):
        (root / name).symlink_to(REPO / name)
    for name in ("none", "l1", "l2", "l1_l2", "sweep"):
        shutil.copytree(
            REPO / "models" / name,
            root / "models" / name,
            ignore=shutil.ignore_patterns("seed-*") if name != "sweep" else None,
        )
    return root


def test_every_readme_cli_line_runs_as_written(tmp_path):
    lines = cli_section()
    assert len(lines) >= 15 and all(line.startswith("regcli ") for line in lines)
    work = fresh_clone(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", tiny(line)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (line, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, line
    # what the lines promise
    assert (work / "models" / "l1_l2-1" / "model.pt").is_file()  # l1_l2 is committed: versioned
    assert (work / "models" / "from-file" / "model.onnx").is_file()
    assert (work / "images" / "weights_compare_none+l1.png").is_file()
    assert (work / "predictions.csv").read_text().count("\n") >= 18


def test_the_readme_describes_the_network_that_exists():
    readme = (REPO / "README.md").read_text()
    parameters = count_parameters(Net())
    assert f"{parameters:,}-parameter" in readme and f"{parameters:,} parameters" in readme
    field = layer_summary(Net())[-4]["receptive_field"]  # before the global pooling
    assert f"receptive field {field} pixels" in readme
    assert re.search(r"dropout 0\.05", readme)
