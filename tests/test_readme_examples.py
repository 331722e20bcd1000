"""The README's example block, run line by line on a fresh clone: every line works as written
(training shortened to one small epoch), and none of them changes or deletes a file of the
committed study (`git status` shows only new, untracked files).

It takes a minute or two, so `make test` leaves it out (marker `examples`) and `make
test-examples` runs it; CI runs both.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.examples
SHORT = "--epochs 1 --limit-train 512 --limit-test 256"  # one small epoch for each train line
SHORT_SUBSET = "--epochs 1 --min-steps 8 --limit-test 256"  # for a --train-size run


def example_lines() -> list[str]:
    """The commands of the README's "CLI at a glance" block, comments dropped."""
    text = (REPO / "README.md").read_text()
    block = text.split("## The CLI at a glance", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("regcli")]


def shortened(line: str) -> str:
    if not line.startswith("regcli train") or "--print-config" in line:
        return line
    return f"{line} {SHORT_SUBSET if '--train-size' in line else SHORT}"


def git(*args: str, cwd: Path) -> str:
    ident = ["-c", "user.name=regcli tests", "-c", "user.email=tests@regcli.invalid"]
    done = subprocess.run(["git", *ident, *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fresh_clone(target: Path) -> Path:
    """A clone of this repository as the working tree has it (uncommitted edits included),
    committed there, so that git status afterwards shows only what the examples did."""
    git("clone", "-q", str(REPO), str(target), cwd=REPO)
    changed = git("diff", "--name-only", "--diff-filter=d", "HEAD", cwd=REPO).splitlines()
    changed += git("ls-files", "-o", "--exclude-standard", cwd=REPO).splitlines()
    for name in changed:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    for name in git("diff", "--name-only", "--diff-filter=D", "HEAD", cwd=REPO).splitlines():
        (target / name).unlink(missing_ok=True)
    git("add", "-A", cwd=target)
    git("commit", "-q", "--allow-empty", "-m", "the working tree", cwd=target)
    return target


def test_the_readme_examples_run_and_leave_the_committed_study_alone(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "regcli").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m regcli "$@"\n')
    (tools / "regcli").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("REGCLI_JOBS", "REGCLI_THREADS")}
    env.update(PATH=f"{tools}:{os.environ['PATH']}", PYTHONPATH=str(clone))
    for line in example_lines():
        done = subprocess.run(
            ["bash", "-c", shortened(line)], cwd=clone, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (line, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, line
    status = git("status", "--porcelain", "--untracked-files=no", cwd=clone)
    assert status == "", f"the examples changed committed files:\n{status}"
