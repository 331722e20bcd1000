"""The CPU layouts, judged: targets and the README's table, from benchmarks/results.json's
"layouts" (`make bench`) and benchmarks/main-job-results.json (`make bench-main-job`).

judge.py imports this; every number it writes comes from those two files.
"""

import json
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAIN_JOB = REPO / "benchmarks" / "main-job-results.json"
LABELS = {
    "one_all_cores": "1 model, every core (the previous layout)",
    "one_all_cores_passive": "1 model, every core, OpenMP's passive wait",
    "one_one_thread": "1 model, one thread (the default)",
    "two_one_after_another": "2 models, one after another on every core",
    "two_side_by_side": "2 models side by side, 2 processes of one thread",
    "four_one_after_another": "4 models, one after another on every core (the previous layout)",
    "four_side_by_side": "4 models side by side, 4 processes of one thread",
    "four_per_core": "4 models, one process per core, one thread each (a long job's default)",
    "four_default": "4 models, the default for a job this short",
}


def main_job() -> dict | None:
    return json.loads(MAIN_JOB.read_text()) if MAIN_JOB.is_file() else None


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{round(seconds % 60):02d}"


def layout_values(r: dict) -> dict:
    """The ratios the targets and sentences use, from one results file's layouts."""
    q, loaded = (
        r["layouts"]["images_per_second"]["quiet"],
        r["layouts"]["images_per_second"]["loaded"],
    )
    quiet_s, loaded_s = r["layouts"]["seconds"]["quiet"], r["layouts"]["seconds"]["loaded"]
    return {
        "one_thread": q["one_one_thread"] / q["one_all_cores"],
        "passive": q["one_all_cores_passive"] / q["one_all_cores"],
        "one_thread_loaded": loaded["one_one_thread"] / loaded["one_all_cores"],
        "passive_loaded": loaded["one_all_cores_passive"] / loaded["one_all_cores"],
        "two": q["two_side_by_side"] / q["two_one_after_another"],
        "four": q["four_per_core"] / q["four_one_after_another"],
        "loaded_four": loaded["four_per_core"] / loaded["four_one_after_another"],
        "slowdown_per_core": loaded_s["four_per_core"] / quiet_s["four_per_core"],
        "slowdown_today": loaded_s["four_one_after_another"] / quiet_s["four_one_after_another"],
        "slowdown_default": loaded_s["four_default"] / quiet_s["four_default"],
    }


def layout_verdicts(r: dict, targets: dict, verdict) -> list[dict]:
    """The layout targets (judge.CPU_TARGETS' layout entries) against the measurements."""
    v, job, lay = layout_values(r), main_job(), r["layouts"]
    out = [
        verdict(
            targets["under_load"],
            v["slowdown_per_core"],
            f"with {lay['competitors']} busy processes on {lay['cores']} cores the job got "
            "less than its fair share",
        )
    ]
    if job:
        j = job["jobs"]
        before, now = j["before"]["seconds"], j["four_default"]["seconds"]
        out.append(
            verdict(
                targets["main_job"],
                now / before,
                f"{minutes(now)} against {minutes(before)} with the code at {job['before']}"
                f"; {epoch_text(job)}",
            )
        )
    return out


MAIN_JOBS = ("before", "four_one_after_another", "four_default")


def epoch_text(job: dict) -> str:
    """The main job's mean epoch per model in each of its three runs."""
    before, today, now = (
        statistics.mean(job["jobs"][n]["mean_epoch_seconds"].values()) for n in MAIN_JOBS
    )
    return (
        f"a model's epoch (its test pass included) took {before:.1f} s with the earlier code on "
        f"every core, {today:.1f} s with today's on every core and {now:.1f} s on one core "
        "beside another"
    )


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def main_job_lines(job: dict) -> list[str]:
    """The README's paragraph on the main job, from main-job-results.json."""
    j = job["jobs"]
    before, today, now = (j[n]["seconds"] for n in MAIN_JOBS)
    finals = [j[n]["final_test_accuracy"] for n in MAIN_JOBS]
    code = "the same" if finals[0] == finals[1] else "not the same"
    layout = "the same" if finals[1] == finals[2] else "slightly different (1 thread, not 2)"
    return [
        "",
        f"The main job, `make all-variants`'s training (4 models x {job['epochs']} epochs on "
        f"all 60,000 images), measured {job['date']} on {job['cores']} cores "
        f"(`make bench-main-job`, the three runs one after another): **{minutes(now)}** in the "
        f"default layout (one process per core), against {minutes(before)} with the code from "
        f"before the CPU work (commit {job['before']}, one model at a time on every core), "
        f"{now / before:.2f}x the time. Today's code in that earlier layout took "
        f"{minutes(today)} ({today / before:.2f}x): its CPU kernels (`regcli/nn/cpu_ops.py`) "
        f"account for that part, the layout for the rest. {sentence(epoch_text(job))} "
        f"Every model's final test accuracy was {code} with both codes in the earlier layout, "
        f"and {layout} in the default one.",
    ]


def layout_lines(r: dict) -> list[str]:
    """The README's layout table and what it shows."""
    lay = r["layouts"]
    ips, v = lay["images_per_second"], layout_values(r)
    rows = []
    for name, label in LABELS.items():
        loaded = ips["loaded"].get(name)
        slowdown = lay["seconds"]["loaded"].get(name, 0) / lay["seconds"]["quiet"][name]
        tail = f"{loaded:,.0f} | {slowdown:.2f}x" if loaded else "| "
        rows.append(f"| {label} | {ips['quiet'][name]:,.0f} | {tail} |")
    fair = (lay["competitors"] + lay["cores"]) / lay["cores"]
    lines = [
        f"CPU layouts: whole `regcli train --variants` jobs (start-up and test passes included), "
        f"{lay['images_per_model']:,} training images per model and "
        f"{lay['test_images_per_epoch']:,} test images, one epoch; median of "
        f"{lay['rounds']['quiet']} rounds taking turns, then {lay['rounds']['loaded']} under a "
        f"competing load of {lay['competitors']} busy processes (on {lay['cores']} cores a fair "
        f"share is a {fair:g}x slowdown).",
        "",
        "| job, images/s of the whole job | quiet | under load | slowdown |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"Quiet, one model trained at {v['one_thread']:.2f}x the speed on one thread as on every "
        f"core ({v['passive']:.2f}x with OpenMP's passive wait); under the load at "
        f"{v['one_thread_loaded']:.2f}x ({v['passive_loaded']:.2f}x). Jobs this short hardly pay "
        f"for starting processes (each starts PyTorch and loads MNIST): side by side, 2 models "
        f"ran at {v['two']:.2f}x and 4 models (one process per core) at {v['four']:.2f}x the "
        f"speed of one after another on every core quiet, and at {v['loaded_four']:.2f}x under "
        f"the load, where the previous layout slowed {v['slowdown_today']:.2f}x and one process "
        f"per core {v['slowdown_per_core']:.2f}x. So on a CPU each model trains on one thread "
        "(which also gives a model the same numbers in every layout), "
        f"and a job of at least {lay['min_pool_steps']:,} (model, step) pairs trains one model per "
        "core side by side (`--jobs`, `--threads` choose otherwise).",
    ]
    job = main_job()
    return lines + (main_job_lines(job) if job else [])
