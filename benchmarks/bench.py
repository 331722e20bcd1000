"""`make bench`: training and inference speed, every figure measured in one run on one machine.

Compares, on the same network and batch size:
  1. the classic notebook pipeline (torchvision MNIST + PIL RandomRotation + DataLoader, and
     torch's own dropout, as the notebooks ran it),
  2. regcli's real trainer (`train_epoch`, the code `regcli train` runs),
  3. the limit: forward + backward + optimizer step on batches already in memory, with regcli's
     dropout and with torch's (which shows what regcli's dropout alone gains),
  4. inference: PyTorch eager vs onnxruntime at several batch sizes, and the wall time of
     `regcli evaluate --backend onnx` end to end.
Each figure is the median of several timed repeats after a warm-up, and figures that are
compared take turns repeat by repeat. Ratios between figures of the same run are what the
targets check; absolute numbers vary with the machine's load.
"""

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import onnxruntime
import torch
import torch.nn.functional as F

from regcli.artifacts import load_metrics, update_readme
from regcli.backends import onnx_session
from regcli.checkpoints import load_checkpoint, versions
from regcli.config import MNIST_MEAN, MNIST_STD, TrainConfig
from regcli.data import SPLIT_FILES, load_split
from regcli.scoring import to_unit
from regcli.export import INPUT_NAME, to_onnx
from regcli.model import Dropout, Net
from regcli.train import resolve_device, start_run, train_epoch

REPO = Path(__file__).resolve().parents[1]
BATCH = 128  # training images per step, as in `regcli train`
TRAIN_STEPS = 40  # optimizer steps per timed repeat
REPEATS = 5  # timed repeats per figure, taken in turns with the figures it is compared to
SETTLE_SECONDS = 0.3  # pause before each timed repeat, for the previous one's leftovers
INFERENCE_BATCHES = (1, 64, 256, 10_000)
INFERENCE_IMAGES = 10_000  # images per timed inference repeat (at least one batch)
TARGETS = {
    "trainer_vs_limit": 0.85,  # regcli training throughput / the limit
    "trainer_vs_classic": 2.5,  # regcli / the classic pipeline's best configuration
    "onnx_vs_torch_64_256": 2.5,  # onnxruntime / PyTorch eager at batch 64 and 256
    "evaluate_onnx_seconds": 2.0,  # `regcli evaluate --backend onnx`, wall, start-up included
    "gpu_four_variants_seconds": 30.0,  # all four variants x 15 epochs on one H100 (training)
}


def interleaved_rates(runs: dict, images: int, repeats: int = REPEATS) -> dict[str, float]:
    """Images per second of each run, the median over timed repeats after one warm-up each.

    The runs take turns, round after round, so that a change in the machine's load (it is
    shared) hits all of them alike and their ratios hold. A pause before each timed run lets
    the previous one's leftovers finish (DataLoader workers filling their queue, onnxruntime
    threads spinning) so that none of it is charged to the next.
    """
    for run_once in runs.values():
        run_once()
    seconds = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run_once in runs.items():
            synchronize()
            time.sleep(SETTLE_SECONDS)
            started = time.perf_counter()
            run_once()
            synchronize()
            seconds[name].append(time.perf_counter() - started)
    return {name: images / statistics.median(times) for name, times in seconds.items()}


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fresh_optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def notebook_net() -> Net:
    """regcli's Net with torch's own dropout, as the notebooks ran it."""
    model = Net()
    for block in model.modules():
        for name, child in block.named_children():
            if isinstance(child, Dropout):
                setattr(block, name, torch.nn.Dropout(child.p))
    return model


def classic_pipeline(root: Path, device, workers: int):
    """The notebooks' way: PIL rotation per sample in a DataLoader."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.RandomRotation((-7.0, 7.0), fill=(0,)),
            transforms.ToTensor(),
            transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
        ]
    )
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    model = notebook_net().to(device).train()
    optimizer = fresh_optimizer(model)
    batches = iter(_forever(loader))

    def steps():
        for _ in range(TRAIN_STEPS):
            images, labels = next(batches)
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()

    return steps


def _forever(loader):
    while True:
        yield from loader


def regcli_trainer(train_split, test_split, device):
    """The real trainer: one `train_epoch` over TRAIN_STEPS batches of rotated images."""
    config = TrainConfig(epochs=100, limit_train=TRAIN_STEPS * BATCH, limit_test=BATCH)
    run = start_run(config, train_split, test_split, device)
    return lambda: train_epoch(run)


def limit(train_split, device, network=Net):
    """No data pipeline at all: the same batches, already normalized and on the device."""
    model = network().to(device).train()
    optimizer = fresh_optimizer(model)
    head = train_split.head(TRAIN_STEPS * BATCH)
    images = torch.from_numpy(to_unit(head.images)).to(device).split(BATCH)
    labels = torch.from_numpy(head.labels).to(device).split(BATCH)

    def steps():
        for x, y in zip(images, labels, strict=True):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    return steps


def training(root: Path, train_split, test_split, device) -> dict[str, float]:
    """Training images per second of the classic pipeline, regcli and the limit, side by side."""
    runs = {
        "classic_workers_0": classic_pipeline(root, device, 0),
        "classic_workers_2": classic_pipeline(root, device, 2),
        "regcli": regcli_trainer(train_split, test_split, device),
        "limit": limit(train_split, device),
        "limit_torch_dropout": limit(train_split, device, notebook_net),
    }
    return interleaved_rates(runs, TRAIN_STEPS * BATCH)


def inference(test_split, device) -> dict:
    """PyTorch eager (eval, inference_mode) and onnxruntime, images per second by batch size."""
    model = Net().eval()
    onnx_bytes = to_onnx(model).SerializeToString()
    session = onnx_session(onnx_bytes)  # as `--backend onnx` opens it
    model = model.to(device)
    pixels = torch.from_numpy(to_unit(test_split.images))
    results = {}
    for batch in INFERENCE_BATCHES:
        chunks = pixels[: max(batch, min(INFERENCE_IMAGES, 2_000 if batch == 1 else 10_000))]
        chunks = list(chunks.split(batch))
        on_device = [c.to(device) for c in chunks]
        as_numpy = [c.numpy() for c in chunks]
        images = sum(len(c) for c in chunks)

        def eager(on_device=on_device):
            with torch.inference_mode():
                for c in on_device:
                    model(c)

        def ort(as_numpy=as_numpy, session=session):
            for c in as_numpy:
                session.run(None, {INPUT_NAME: c})

        results[batch] = interleaved_rates({"torch": eager, "onnx": ort}, images)
    return results


def evaluate_wall_time(model_dir: Path) -> float:
    """Seconds for `regcli evaluate <model> --backend onnx`, process start to exit."""
    command = [
        sys.executable,
        "-m",
        "regcli",
        "evaluate",
        str(model_dir),
        "--backend",
        "onnx",
        "--data-dir",
        str(REPO / "data"),
    ]
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def torch_import_seconds() -> float:
    """Wall time of a Python process that only imports torch: the floor under any regcli run."""
    command = [sys.executable, "-c", "import torch"]
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def exported_model(scratch: Path) -> Path:
    """The committed models/none if it has an ONNX file; else a quick one trained here."""
    committed = REPO / "models" / "none"
    if (committed / "model.onnx").is_file():
        return committed
    from regcli.export import export
    from regcli.runs import train_and_save

    config = TrainConfig(epochs=1, limit_train=2_000, limit_test=500)
    model_dir = train_and_save(
        config, "bench", scratch / "models", scratch / "images", REPO / "data", "cpu"
    )
    export(model_dir, REPO / "data")
    return model_dir


def raw_idx_folder(scratch: Path) -> Path:
    """torchvision's MNIST wants the uncompressed IDX files in <root>/MNIST/raw."""
    raw = scratch / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in SPLIT_FILES["train"] + SPLIT_FILES["test"]:
        with (
            gzip.open(REPO / "data" / "MNIST" / "raw" / f"{name}.gz") as source,
            open(raw / name, "wb") as target,
        ):
            shutil.copyfileobj(source, target)
    return scratch


def four_variant_seconds(models_dir: Path) -> float | None:
    """Total training seconds of none/l1/l2/l1_l2 x 15 epochs, if they were trained on a GPU."""
    total = 0.0
    for name in ("none", "l1", "l2", "l1_l2"):
        if not (models_dir / name / "model.pt").is_file():
            return None
        if load_checkpoint(models_dir / name).get("device", "").split(":")[0] != "cuda":
            return None
        epochs = load_metrics(models_dir / name)["epochs"]
        if len(epochs) != 15:
            return None
        total += sum(r["seconds"] for r in epochs)
    return total


def machine(device) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "platform": platform.platform(),
        **versions(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    info["onnxruntime"] = onnxruntime.__version__
    return info


def verdicts(results: dict) -> list[dict]:
    """Each target with its measured value, met or not, and for a miss the measured reason."""
    training, inf = results["training"], results["inference"]
    best_classic = max(training["classic_workers_0"], training["classic_workers_2"])
    notebook_model_ms = 1000 * BATCH / training["limit_torch_dropout"]
    pipeline_ms = 1000 * BATCH / best_classic - notebook_model_ms
    ceiling = training["limit"] / best_classic
    checks = [
        (
            "regcli trainer >= 0.85 x limit",
            training["regcli"] / training["limit"],
            TARGETS["trainer_vs_limit"],
            "the batch pipeline (index, rotate by gather) costs more than 15% of the model step",
        ),
        (
            "regcli trainer >= 2.5 x classic (best)",
            training["regcli"] / best_classic,
            TARGETS["trainer_vs_classic"],
            f"here the classic pipeline adds only {pipeline_ms:.1f} ms per batch to the "
            f"notebook model's own {notebook_model_ms:.1f} ms; regcli's model step takes "
            f"{1000 * BATCH / training['limit']:.1f} ms, so even a free pipeline (the limit) is "
            f"only {ceiling:.2f}x the classic one: the model, not the data pipeline, is the "
            "bottleneck on this machine",
        ),
    ]
    for batch in (64, 256):
        rates = inf[str(batch)]
        checks.append(
            (
                f"onnxruntime >= 2.5 x PyTorch eager, batch {batch}",
                rates["onnx"] / rates["torch"],
                TARGETS["onnx_vs_torch_64_256"],
                f"onnxruntime {rates['onnx']:,.0f} vs PyTorch {rates['torch']:,.0f} images/s in "
                "this run; at batch 64-256 the ratio swings widely from run to run on a shared "
                "machine, so rerun `make bench` before reading much into it",
            )
        )
    out = [
        {
            "target": name,
            "measured": value,
            "needed": need,
            "met": value >= need,
            "unit": "ratio",
            **({} if value >= need else {"why": why}),
        }
        for name, value, need, why in checks
    ]
    seconds = results["evaluate_onnx_seconds"]
    met = seconds < TARGETS["evaluate_onnx_seconds"]
    out.append(
        {
            "target": "regcli evaluate --backend onnx < 2 s wall",
            "measured": seconds,
            "needed": TARGETS["evaluate_onnx_seconds"],
            "met": met,
            "unit": "s",
            **(
                {}
                if met
                else {
                    "why": f"importing PyTorch alone takes "
                    f"{results['torch_import_seconds']:.2f} s here"
                }
            ),
        }
    )
    study = results.get("four_variant_training_seconds")
    if study is not None:
        met = study < TARGETS["gpu_four_variants_seconds"]
        out.append(
            {
                "target": "4 variants x 15 epochs < 30 s training (GPU)",
                "measured": study,
                "needed": TARGETS["gpu_four_variants_seconds"],
                "met": met,
                "unit": "s",
                **(
                    {}
                    if met
                    else {
                        "why": "one eager step per batch is bound by kernel launches "
                        "(about 150 per step); the four runs are sequential"
                    }
                ),
            }
        )
    return out


def print_report(results: dict) -> None:
    m = results["machine"]
    print(
        f"regcli bench, {results['date']}: {m['cpu']}, {m['cores']} cores, "
        f"{m.get('gpu', 'no GPU')}, device {m['device']}, torch {m['torch']}"
    )
    print("\ntraining, images/s (batch 128)")
    for key, label in [
        ("classic_workers_0", "classic pipeline, num_workers=0"),
        ("classic_workers_2", "classic pipeline, num_workers=2"),
        ("regcli", "regcli trainer"),
        ("limit", "limit (model only)"),
        ("limit_torch_dropout", "limit with torch's dropout"),
    ]:
        print(f"  {label:<34} {results['training'][key]:>10,.0f}")
    print("\ninference, images/s  PyTorch eager  onnxruntime   ratio")
    for batch, rates in results["inference"].items():
        print(
            f"  batch {batch:>6}      {rates['torch']:>12,.0f} {rates['onnx']:>12,.0f}"
            f"  {rates['onnx'] / rates['torch']:>6.2f}x"
        )
    print(
        f"\nregcli evaluate --backend onnx (10,000 images, wall): "
        f"{results['evaluate_onnx_seconds']:.2f} s; python -c 'import torch' alone: "
        f"{results['torch_import_seconds']:.2f} s"
    )
    if results.get("four_variant_training_seconds") is not None:
        print(
            f"four variants x 15 epochs, training time: "
            f"{results['four_variant_training_seconds']:.1f} s"
        )
    print("\ntargets")
    for v in results["targets"]:
        value = f"{v['measured']:.2f}{'x' if v['unit'] == 'ratio' else ' s'}"
        print(f"  [{'met' if v['met'] else 'MISSED'}] {v['target']}: {value}")
        if "why" in v:
            print(f"      why: {v['why']}")


README_SECTION = ("speed", "make bench")  # the README's generated speed tables
TRAINING_ROWS = {
    "classic_workers_0": "classic pipeline: torchvision MNIST + PIL `RandomRotation` + "
    "`DataLoader`, `num_workers=0`, torch's dropout (as the notebooks)",
    "classic_workers_2": "classic pipeline, `num_workers=2`",
    "regcli": "**regcli trainer** (the real `train_epoch`: data on the device, rotation by gather)",
    "limit": "limit: regcli's model, forward + backward + step on batches already in memory",
    "limit_torch_dropout": "the same limit with torch's own dropout",
}


def readme_section(results: dict) -> str:
    """The README's speed tables, from one run's results."""
    m, training = results["machine"], results["training"]
    lines = [
        f"Measured {results['date']} on {m['cpu']}, {m['cores']} cores, no GPU; PyTorch "
        f"{m['torch'].split('+')[0]}, onnxruntime {m['onnxruntime']}. Batch {BATCH}, median of "
        f"{REPEATS} repeats after a warm-up, the figures that are compared taking turns.",
        "",
        "| training, images/s | |",
        "| --- | ---: |",
        *(f"| {label} | {training[key]:,.0f} |" for key, label in TRAINING_ROWS.items()),
        "",
        "| inference, images/s | PyTorch eager | onnxruntime | ratio |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| batch {int(batch):,} | {r['torch']:,.0f} | {r['onnx']:,.0f} | "
            f"{r['onnx'] / r['torch']:.2f}x |"
            for batch, r in results["inference"].items()
        ),
        "",
        f"`regcli evaluate --backend onnx` on the 10,000 test images: "
        f"{results['evaluate_onnx_seconds']:.2f} s wall, start-up included "
        f'(`python -c "import torch"` alone: {results["torch_import_seconds"]:.2f} s).',
        "",
        "| target | measured | |",
        "| --- | ---: | --- |",
    ]
    for v in results["targets"]:
        value = f"{v['measured']:.2f}{'x' if v['unit'] == 'ratio' else ' s'}"
        verdict = "met" if v["met"] else f"**missed**: {v['why']}"
        lines.append(f"| {v['target']} | {value} | {verdict} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results[-<gpu>].json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    train_split, test_split = load_split(REPO / "data", "train"), load_split(REPO / "data", "test")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = raw_idx_folder(scratch / "torchvision")
        speeds = training(root, train_split, test_split, device)
        model_dir = exported_model(scratch)
        results = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(device),
            "settings": {"batch": BATCH, "train_steps": TRAIN_STEPS, "repeats": REPEATS},
            "training": speeds,
            "inference": {str(k): v for k, v in inference(test_split, device).items()},
            "evaluate_onnx_seconds": evaluate_wall_time(model_dir),
            "torch_import_seconds": torch_import_seconds(),
            "four_variant_training_seconds": four_variant_seconds(REPO / "models")
            if device.type == "cuda"
            else None,
        }
    results["targets"] = verdicts(results)
    print_report(results)
    suffix = ""
    if device.type == "cuda":
        suffix = "-" + torch.cuda.get_device_name().lower().replace(" ", "-")
    out = args.out or REPO / "benchmarks" / f"results{suffix}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    if device.type == "cpu":  # the GPU figures are quoted by hand from their own file
        update_readme(REPO / "README.md", *README_SECTION, readme_section(results))
        print(f"updated the speed tables in {REPO / 'README.md'}")


if __name__ == "__main__":
    main()
