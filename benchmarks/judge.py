"""`make bench`, the judging half: reads the results files bench.py wrote, checks each target
(thresholds below, in one table), and renders the README's speed sections from them.

Reads benchmarks/results.json (CPU) and benchmarks/results-<gpu>.json (one per GPU kind, the
newest first); writes only README.md's two generated sections, `speed` and `gpu-speed`. Every
sentence with a number, a missed target's reason included, is computed from those files.
"""

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from judge_layouts import layout_lines, layout_verdicts  # noqa: E402

from regcli.core.files import update_readme  # noqa: E402
from regcli.store.records import load_metrics  # noqa: E402
from regcli.studies.stats import welch  # noqa: E402

CPU_SECTION = ("speed", "make bench")
GPU_SECTION = ("gpu-speed", "make bench")
MIN_ACCURACY = 99.3  # % final test accuracy every model of the GPU studies must reach


@dataclass(frozen=True)
class Target:
    label: str  # with {needed} (and {stretch}, {epochs}): each number is written once, here
    needed: float
    unit: str  # "x" (a ratio, higher is better), "ratio" (lower is better) or "s" (seconds)
    stretch: float | None = None  # a harder second goal, named beside the target

    def text(self, **values) -> str:
        stretch = f"{self.stretch:g}" if self.stretch is not None else ""
        return self.label.format(needed=f"{self.needed:g}", stretch=stretch, **values)

    def met(self, value: float) -> bool:
        return value >= self.needed if self.unit == "x" else value <= self.needed


CPU_TARGETS = {
    "trainer_vs_limit": Target("regcli trainer >= {needed} x limit", 0.85, "x"),
    "trainer_vs_classic": Target("regcli trainer >= {needed} x classic (best)", 2.5, "x"),
    "onnx_64": Target("onnxruntime >= {needed} x PyTorch eager, batch 64", 2.5, "x"),
    "onnx_256": Target("onnxruntime >= {needed} x PyTorch eager, batch 256", 2.5, "x"),
    "evaluate": Target("regcli evaluate --backend onnx < {needed} s wall", 2.0, "s"),
    "under_load": Target(
        "4 models, one process per core, under the competing load <= {needed} x their quiet time",
        2.5,
        "ratio",
    ),
    "main_job": Target(
        "make all-variants' training <= {needed} x its wall time with the code from before the "
        "CPU layout's issue (one model at a time, every core), measured in the same run",
        0.6,
        "ratio",
    ),
}
GPU_TARGETS = {
    "four_variants": Target(
        "four variants x {epochs} epochs <= {needed} s (stretch: {stretch} s)", 12.0, "s", 8.0
    ),
    "twenty_models": Target("twenty models x {epochs} epochs <= {needed} s", 30.0, "s"),
    "one_model": Target("one model x {epochs} epochs <= {needed} s", 7.0, "s"),
}


def verdict(target: Target, value: float, why: str, **values) -> dict:
    met = target.met(value)
    return {
        "target": target.text(**values),
        "measured": value,
        "unit": target.unit,
        "met": met,
        **({} if met else {"why": why}),
    }


def judge_cpu(r: dict) -> list[dict]:
    t, inf = r["training"], r["inference"]
    best = max(t["classic_workers_0"], t["classic_workers_2"])
    notebook_ms = 1000 * r["settings"]["batch"] / t["limit_torch_dropout"]
    pipeline_ms = 1000 * r["settings"]["batch"] / best - notebook_ms
    model_ms = 1000 * r["settings"]["batch"] / t["limit"]
    ratios = {b: v["onnx"] / v["torch"] for b, v in inf.items()}
    spread = f"{min(ratios.values()):.2f}-{max(ratios.values()):.2f}x"
    out = [
        verdict(
            CPU_TARGETS["trainer_vs_limit"],
            t["regcli"] / t["limit"],
            f"the batch pipeline costs {model_ms * (t['limit'] / t['regcli'] - 1):.1f} ms "
            f"per batch on top of the model's {model_ms:.1f} ms",
        ),
        verdict(
            CPU_TARGETS["trainer_vs_classic"],
            t["regcli"] / best,
            f"here the classic pipeline adds only {pipeline_ms:.1f} ms per batch to the "
            f"notebook model's own {notebook_ms:.1f} ms; regcli's model step takes "
            f"{model_ms:.1f} ms, so even a free pipeline (the limit) is only "
            f"{t['limit'] / best:.2f}x the classic one: the model, not the data pipeline, is "
            "the bottleneck on this machine",
        ),
    ]
    for batch in ("64", "256"):
        v = inf[batch]
        out.append(
            verdict(
                CPU_TARGETS[f"onnx_{batch}"],
                ratios[batch],
                f"onnxruntime {v['onnx']:,.0f} vs PyTorch {v['torch']:,.0f} images/s "
                f"in this run, where the ratio over all batch sizes spans {spread}",
            )
        )
    out.append(
        verdict(
            CPU_TARGETS["evaluate"],
            r["evaluate_onnx_seconds"],
            f"importing PyTorch alone takes {r['torch_import_seconds']:.2f} s here",
        )
    )
    return out + (layout_verdicts(r, CPU_TARGETS, verdict) if "layouts" in r else [])


def cpu_section(r: dict) -> str:
    """The README's CPU speed tables, from one run's results."""
    m, t = r["machine"], r["training"]
    k = t["grouped_models"]
    rows = {
        "classic_workers_0": "classic pipeline: torchvision MNIST + PIL `RandomRotation` + "
        "`DataLoader`, `num_workers=0`, torch's dropout (as the notebooks)",
        "classic_workers_2": "classic pipeline, `num_workers=2`",
        "regcli": "**regcli trainer** (the real training step: data on the device, rotation "
        "by gather, one model)",
        "limit": "limit: regcli's model, forward + backward + step on batches already in memory",
        "limit_torch_dropout": "the same limit with torch's own dropout",
        f"grouped_{k}": f"regcli trainer, {k} models as one grouped network (all {k} counted)",
        f"one_at_a_time_{k}": f"regcli trainer, the same {k} models one at a time",
    }
    grouped = t[f"grouped_{k}"] / t[f"one_at_a_time_{k}"]
    lines = [
        f"Measured {r['date']} on {m['cpu']}, {m['cores']} cores, no GPU; PyTorch "
        f"{r['versions']['torch'].split('+')[0]}, onnxruntime {r['versions']['onnxruntime']}. "
        f"Batch {r['settings']['batch']}, median of {r['settings']['repeats']} repeats after a "
        "warm-up, the figures that are compared taking turns.",
        "",
        "| training, images/s | |",
        "| --- | ---: |",
        *(f"| {label} | {t[key]:,.0f} |" for key, label in rows.items()),
        "",
        f"On this CPU, {k} models trained as one grouped network ran at {grouped:.2f}x the "
        f"speed of the same {k} one at a time, so on a CPU `regcli train` trains one model at a "
        "time by default (`--group-size` overrides it).",
        "",
        "| inference, images/s | PyTorch eager | onnxruntime | ratio |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| batch {int(b):,} | {v['torch']:,.0f} | {v['onnx']:,.0f} | "
            f"{v['onnx'] / v['torch']:.2f}x |"
            for b, v in r["inference"].items()
        ),
        "",
        *([*layout_lines(r), ""] if "layouts" in r else []),
        *install_lines(r),
        f"`regcli evaluate --backend onnx` on the 10,000 test images: "
        f"{r['evaluate_onnx_seconds']:.2f} s wall, start-up included "
        f'(`python -c "import torch"` alone: {r["torch_import_seconds"]:.2f} s).',
        "",
        *target_table(judge_cpu(r)),
    ]
    return "\n".join(lines)


def install_lines(r: dict) -> list[str]:
    """What `make` installs, measured by the bench (nothing if this results file predates it)."""
    i = r.get("install")
    if not i:
        return []

    def gb(key: str) -> str:
        return f"{i[key] / 1e9:.1f} GB"

    cuda = f" for CUDA {i['cuda_build']}" if i["cuda_build"] else ""
    return [
        f"Installed size: the `.venv` that `make` builds takes {gb('environment_bytes')} on "
        f"disk, {gb('cuda_libraries_bytes')} of it NVIDIA's CUDA libraries and "
        f"{gb('torch_bytes')} PyTorch itself (torch {i['torch_build']}: PyPI's wheel of the "
        f"pinned pair for this platform is built{cuda}, and used on a CPU as well; PyTorch's "
        "CPU-only wheels are not on PyPI, so no smaller install fits the rule that `make` "
        "downloads nothing but PyPI packages).",
        "",
    ]


def target_table(verdicts: list[dict]) -> list[str]:
    lines = ["| target | measured | |", "| --- | ---: | --- |"]
    for v in verdicts:
        value = f"{v['measured']:.2f}{' s' if v['unit'] == 's' else 'x'}"
        lines.append(
            f"| {v['target']} | {value} | {'met' if v['met'] else '**missed**: ' + v['why']} |"
        )
    return lines


# --- GPU ----------------------------------------------------------------------------------------


def committed_seeds(variant: str) -> list[float]:
    """Final test accuracies (%) of the committed one-at-a-time seeds of a variant."""
    out = []
    for folder in sorted((REPO / "models" / variant).glob("seed-*")):
        out.append(100 * load_metrics(folder)["epochs"][-1]["test_accuracy"])
    return out


def accuracy_checks(r: dict) -> list[dict]:
    """Per variant: the grouped twenty-model study's 5 seeds against the committed seeds."""
    study = r["studies"]["twenty_models"]
    variants = r["variants"]
    finals = [100 * a for a in study["final_test_accuracy"]]
    checks = []
    for i, variant in enumerate(variants):
        grouped = finals[i :: len(variants)]
        alone = committed_seeds(variant)
        difference = welch(grouped, alone) if alone else None
        checks.append(
            {
                "variant": variant,
                "grouped": grouped,
                "alone": alone,
                "verdict": difference.verdict() if difference else "no committed seeds",
                "within_noise": bool(difference) and difference.low <= 0 <= difference.high,
            }
        )
    return checks


def judge_gpu(r: dict) -> list[dict]:
    s = r["studies"]
    fast = s["four_variants_fast"]["seconds"]
    out = []
    for key, target in GPU_TARGETS.items():
        study = s[key]
        alone = s["four_one_at_a_time"]["seconds"] / 4
        why = (
            f"{study['images_per_second']:,.0f} images/s over {study['models']} model(s) "
            f"({study['seconds'] / study['models']:.1f} s per model; one model alone "
            f"{alone:.1f} s)"
        )
        if key == "four_variants":
            why += (
                f"; with --no-deterministic (cuDNN's fastest kernels) the same group took "
                f"{fast:.1f} s"
            )
        if not study["cuda_graphs"]:
            why += "; CUDA graph capture failed, so it ran eagerly"
        out.append(verdict(target, study["seconds"], why, epochs=study["epochs"]))
    checks = accuracy_checks(r)
    lowest = min(100 * a for st in s.values() for a in st["final_test_accuracy"])
    noisy = [c["variant"] for c in checks if not c["within_noise"]]
    out.append(
        {
            "target": f"every model >= {MIN_ACCURACY}% final test accuracy",
            "measured": lowest,
            "unit": "%",
            "met": lowest >= MIN_ACCURACY,
            **({} if lowest >= MIN_ACCURACY else {"why": f"the lowest reached {lowest:.2f}%"}),
        }
    )
    out.append(
        {
            "target": "each variant's 5-seed mean within noise of the committed seeds "
            "(trained one at a time)",
            "measured": len(checks) - len(noisy),
            "unit": f"of {len(checks)}",
            "met": not noisy,
            **(
                {}
                if not noisy
                else {
                    "why": "outside the 95% Welch interval: "
                    + ", ".join(noisy)
                    + " (one in four intervals misses zero by chance about one time in five: train "
                    "more seeds of it both ways before concluding)"
                }
            ),
        }
    )
    return out


STUDY_LABELS = {
    "four_variants": "four variants (none, l1, l2, l1_l2) as one group",
    "four_variants_fast": "the same, `--no-deterministic`",
    "twenty_models": "twenty models (4 variants x 5 seeds) as one group",
    "one_model": "one model (`regcli train --l1 1e-5 --weight-decay 1e-4`)",
    "four_one_at_a_time": "the four variants one at a time (`--group-size 1`)",
}


def gpu_section(r: dict) -> str:
    m, s = r["machine"], r["studies"]
    epochs = s["four_variants"]["epochs"]
    lines = [
        f"Measured {r['date']} on one {m['gpu']} ({m['gpu_memory_gib']:g} GiB), PyTorch "
        f"{r['versions']['torch']}: {epochs} epochs on all 60,000 training images, the test "
        "pass after every epoch and the CUDA graph capture included; wall time of the training "
        "call (`benchmarks/bench.py --device cuda`).",
        "",
        "| study | models | training time | images/s | final test acc % |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label in STUDY_LABELS.items():
        st = s[key]
        accuracies = [100 * a for a in st["final_test_accuracy"]]
        span = (
            f"{min(accuracies):.2f}"
            if len(accuracies) == 1
            else f"{min(accuracies):.2f}-{max(accuracies):.2f}"
        )
        lines.append(
            f"| {label} | {st['models']} | {st['seconds']:.1f} s | "
            f"{st['images_per_second']:,.0f} | {span} |"
        )
    checks = accuracy_checks(r)
    lines += [
        "",
        "| variant | grouped, 5 seeds: mean % | committed one at a time: mean % | "
        "grouped vs alone (95% Welch interval) |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {c['variant']} | {statistics.mean(c['grouped']):.3f} | "
            f"{statistics.mean(c['alone']):.3f} | {c['verdict']} |"
            for c in checks
            if c["alone"]
        ),
        "",
    ]
    verdicts = judge_gpu(r)
    table = ["| target | measured | |", "| --- | ---: | --- |"]
    for v in verdicts:
        unit = {"s": " s", "%": "%"}.get(v["unit"], f" {v['unit']}")
        value = (
            f"{v['measured']:.2f}{unit}"
            if isinstance(v["measured"], float)
            else f"{v['measured']}{unit}"
        )
        table.append(
            f"| {v['target']} | {value} | {'met' if v['met'] else '**missed**: ' + v['why']} |"
        )
    return "\n".join(lines + table)


def gpu_results() -> list[dict]:
    """Every GPU results file, newest first."""
    found = [json.loads(p.read_text()) for p in (REPO / "benchmarks").glob("results-*.json")]
    return sorted(found, key=lambda r: r["date"], reverse=True)


def gpu_sections() -> str:
    found = gpu_results()
    if not found:
        return (
            "No GPU measurement of this code yet: run `make bench` on a machine with a CUDA "
            "GPU (it writes `benchmarks/results-<gpu>.json`), then `make bench-readme`."
        )
    return "\n\n".join(gpu_section(r) for r in found)


def main():
    cpu = json.loads((REPO / "benchmarks" / "results.json").read_text())
    readme = REPO / "README.md"
    update_readme(readme, {CPU_SECTION: cpu_section(cpu), GPU_SECTION: gpu_sections()})
    for v in judge_cpu(cpu) + [v for r in gpu_results() for v in judge_gpu(r)]:
        print(f"[{'met' if v['met'] else 'MISSED'}] {v['target']}: {v['measured']:.2f}")
    print(f"updated the speed sections of {readme}")


if __name__ == "__main__":
    main()
