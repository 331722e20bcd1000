"""The CPU layouts, measured as a user meets them: real `regcli train` commands, whole jobs
(start-up, training, test passes), quiet and under a competing load that this module starts.

Imported by bench.py (`make bench`: short jobs, every layout, taking turns) and run by itself
(`make bench-main-job`: the main job, `make all-variants`'s training, in the previous layout
and the default one). Each job trains the four-variant study's models (none, l1, l2, l1_l2 with the
study's strengths, seed 1), so the jobs differ only in how they are laid out on the cores.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from regcli.core.provenance import machine, versions  # noqa: E402
from regcli.jobs.pool import MIN_POOL_STEPS  # noqa: E402
from regcli.train.devices import usable_cores  # noqa: E402

VARIANTS = ("none", "l1", "l2", "l1_l2")
STUDY = ["--l1", "1e-5", "--weight-decay", "1e-4", "--seed", "1"]  # make all-variants' own
SHORT_IMAGES = 6_000  # training images per model in a short job (one epoch)
SHORT_TEST = 1_000  # test images per epoch in a short job
QUIET_ROUNDS = 3  # rounds of every layout, taking turns; each figure is the median
LOADED_ROUNDS = 2  # the same under the competing load
COMPETITORS = 2  # busy processes of the competing load (one per core on this machine)
LOAD_SECONDS = 900  # each competitor ends by itself after this, whatever happens to the bench
MAIN_JOB_OUT = REPO / "benchmarks" / "main-job-results.json"  # not results-*: a GPU kind
BEFORE = "59366a7"  # the code when the CPU layout's issue was filed: the main job's yardstick


def layouts(cores: int) -> dict[str, tuple[int, list[str], dict]]:
    """name: (models, the layout's options, its environment). `previous` is the layout before
    side by side: one model at a time on every core, OpenMP's default (spinning) wait."""
    previous = ["--jobs", "1", "--threads", str(cores)]
    per_core = ["--jobs", str(cores), "--threads", "1"]
    return {
        "one_all_cores": (1, previous, {}),
        "one_all_cores_passive": (1, previous, {"OMP_WAIT_POLICY": "PASSIVE"}),
        "one_one_thread": (1, ["--jobs", "1", "--threads", "1"], {}),
        "two_one_after_another": (2, previous, {}),
        "two_side_by_side": (2, ["--jobs", "2", "--threads", "1"], {}),
        "four_one_after_another": (4, previous, {}),
        "four_side_by_side": (4, ["--jobs", "4", "--threads", "1"], {}),
        "four_per_core": (4, per_core, {}),  # the main job's layout (a long job's default)
        "four_default": (4, [], {}),  # what a job this short does by default
    }


LOADED = (
    "one_all_cores",
    "one_all_cores_passive",
    "one_one_thread",
    "four_one_after_another",
    "four_per_core",
    "four_default",
)


def train_command(models: int, layout: list[str], folder: Path, short: bool) -> list[str]:
    length = ["--epochs", "1", "--limit-train", str(SHORT_IMAGES), "--limit-test", str(SHORT_TEST)]
    return [
        sys.executable,
        "-m",
        "regcli",
        "train",
        "--variants",
        ",".join(VARIANTS[:models]),
        *STUDY,
        *(length if short else ["--epochs", "15"]),
        "--device",
        "cpu",
        "--models-dir",
        str(folder / "models"),
        "--images-dir",
        str(folder / "images"),
        "--data-dir",
        str(REPO / "data"),
        "--force",
        "--quiet",
        *layout,
    ]


def job_seconds(command: list[str], extra: dict | None = None, code: Path = REPO) -> float:
    """The wall time of one whole job (the environment as a user's shell has it, and extra),
    run by the regcli package in `code`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "REGCLI_JOBS")}
    env.update(extra or {})
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=code)
    return time.perf_counter() - started


def busy() -> subprocess.Popen:
    """One competitor: a process that keeps a core busy, ending by itself after LOAD_SECONDS."""
    spin = f"import time\nend = time.time() + {LOAD_SECONDS}\nwhile time.time() < end: pass"
    return subprocess.Popen([sys.executable, "-c", spin])


@contextmanager
def competing_load(count: int = COMPETITORS):
    """`count` busy processes for the duration, stopped when it ends (or fails)."""
    competitors = [busy() for _ in range(count)]
    try:
        time.sleep(1.0)  # let them take the cores
        yield
    finally:
        for competitor in competitors:
            competitor.kill()
            competitor.wait()


def rounds(names: list[str], table: dict, folder: Path, count: int) -> dict[str, float]:
    """Median wall seconds of each layout's short job, the layouts taking turns."""
    seconds = {name: [] for name in names}
    for _ in range(count):
        for name in names:
            models, layout, env = table[name]
            command = train_command(models, layout, folder, short=True)
            seconds[name].append(job_seconds(command, env))
    return {name: statistics.median(times) for name, times in seconds.items()}


def measure_layouts() -> dict:
    """`make bench`'s layout figures: images/s of each whole short job, quiet and loaded."""
    cores = usable_cores()
    table = layouts(cores)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        job_seconds(train_command(1, [], folder, short=True))  # warm the file cache
        quiet = rounds(list(table), table, folder, QUIET_ROUNDS)
        with competing_load():
            loaded = rounds(list(LOADED), table, folder, LOADED_ROUNDS)
    images = {name: models * SHORT_IMAGES for name, (models, *_) in table.items()}
    return {
        "cores": cores,
        "images_per_model": SHORT_IMAGES,
        "test_images_per_epoch": SHORT_TEST,
        "rounds": {"quiet": QUIET_ROUNDS, "loaded": LOADED_ROUNDS},
        "competitors": COMPETITORS,
        "layouts": {n: {"models": m, "options": o, "env": e} for n, (m, o, e) in table.items()},
        "min_pool_steps": MIN_POOL_STEPS,
        "seconds": {"quiet": quiet, "loaded": loaded},
        "images_per_second": {
            "quiet": {n: images[n] / s for n, s in quiet.items()},
            "loaded": {n: images[n] / s for n, s in loaded.items()},
        },
    }


def code_before(folder: Path) -> Path:
    """The regcli package as it was at BEFORE (from this repository's history), in folder."""
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE, "regcli"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def measure_main_job() -> dict:
    """`make all-variants`'s training (4 models x 15 epochs on all 60,000 images) three ways,
    one after another: the code at BEFORE in its layout (one model at a time on every core),
    today's code in that layout, and today's code in its default one; with each model's final
    accuracy and mean epoch."""
    cores = usable_cores()
    table = layouts(cores)
    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        runs = {  # name: (its layout's options, the code that runs it)
            "before": ([], code_before(Path(scratch) / "before-code")),
            "four_one_after_another": (table["four_one_after_another"][1], REPO),
            "four_default": (table["four_default"][1], REPO),
        }
        for name, (layout, code) in runs.items():
            folder = Path(scratch) / name
            seconds = job_seconds(train_command(4, layout, folder, short=False), code=code)
            finals, epoch_seconds = {}, {}
            for variant in VARIANTS:
                metrics = json.loads((folder / "models" / variant / "metrics.json").read_text())
                finals[variant] = metrics["epochs"][-1]["test_accuracy"]
                epoch_seconds[variant] = statistics.mean(r["seconds"] for r in metrics["epochs"])
            out[name] = {
                "seconds": seconds,
                "final_test_accuracy": finals,
                "mean_epoch_seconds": epoch_seconds,  # each model's epoch, its test pass included
                "options": layout,
            }
    return {"cores": cores, "epochs": 15, "before": BEFORE, "jobs": out}


def main():
    parser = argparse.ArgumentParser(description="make bench-main-job: " + __doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=MAIN_JOB_OUT)
    args = parser.parse_args()
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine("cpu"),
        "versions": versions(),
        **measure_main_job(),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
