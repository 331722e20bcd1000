"""`make bench`, the measuring half: every figure measured in one run on one machine, written to
one results file and nothing else (benchmarks/judge.py reads it, checks the targets and writes
the README's speed sections).

What it measures:
  CPU (benchmarks/results.json, last run on the project's 2-core machine):
    1. training images/s: the classic notebook pipeline (torchvision MNIST + PIL rotation +
       DataLoader, torch's dropout), regcli's trainer (the real GroupTrainer step), and the limit
       (forward + backward + step on batches already in memory, with regcli's and torch's
       dropout); and regcli's trainer with 4 models grouped against the same 4 one at a time,
    2. inference images/s, PyTorch eager against onnxruntime, at batch 1 to 10,000,
    3. the wall time of `regcli evaluate --backend onnx`, and of `import torch` alone,
    4. the CPU layouts (benchmarks/layouts.py): whole `regcli train` jobs of 1, 2 and 4 models,
       one after another on every core against side by side in one-thread processes, quiet and
       under a competing load the bench starts and stops itself.
  GPU (benchmarks/results-<gpu>.json, e.g. results-nvidia-h100-80gb-hbm3.json):
    the studies as `regcli train` runs them, 15 epochs on all 60,000 images: the four variants
    as one group (deterministic and --no-deterministic), twenty models (4 variants x 5 seeds)
    as one group, one model alone, and the four variants one at a time (group size 1), each
    with its training time, images/s and every model's final test accuracy.
Each CPU figure is the median of several timed repeats after a warm-up, and figures that are
compared take turns repeat by repeat, so the machine's load drift hits them alike.
"""

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from layouts import measure_layouts  # benchmarks/layouts.py, beside this file

from regcli.core.config import MNIST_MEAN, MNIST_STD, TrainConfig
from regcli.core.provenance import machine, versions
from regcli.data.mnist import SPLIT_FILES, load_split
from regcli.inference.backends import onnx_session
from regcli.inference.export import INPUT_NAME, to_onnx
from regcli.inference.scoring import to_unit
from regcli.nn.model import Dropout, Net
from regcli.train.devices import resolve_device
from regcli.train.trainer import GroupTrainer, train_group

REPO = Path(__file__).resolve().parents[1]
BATCH = 128  # training images per step, as in `regcli train`
TRAIN_STEPS = 40  # optimizer steps per timed repeat
REPEATS = 5  # timed repeats per figure, taken in turns with the figures it is compared to
SETTLE_SECONDS = 0.3  # pause before each timed repeat, for the previous one's leftovers
INFERENCE_BATCHES = (1, 64, 256, 10_000)
INFERENCE_IMAGES = 10_000  # images per timed inference repeat (at least one batch)
GROUPED = 4  # models in the CPU grouped-versus-one-at-a-time comparison
STUDY_L1, STUDY_WD = 1e-5, 1e-4  # the four-variant study's strengths (make all-variants)
VARIANTS = {
    "none": (0.0, 0.0),
    "l1": (STUDY_L1, 0.0),
    "l2": (0.0, STUDY_WD),
    "l1_l2": (STUDY_L1, STUDY_WD),
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
            time.sleep(SETTLE_SECONDS)
            started = time.perf_counter()
            run_once()
            seconds[name].append(time.perf_counter() - started)
    return {name: images / statistics.median(times) for name, times in seconds.items()}


def notebook_net() -> Net:
    """regcli's Net with torch's own dropout, as the notebooks ran it."""
    model = Net()
    for block in model.modules():
        for name, child in block.named_children():
            if isinstance(child, Dropout):
                setattr(block, name, torch.nn.Dropout(child.p))
    return model


def classic_pipeline(root: Path, workers: int):
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
    )
    model = notebook_net().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = iter(_forever(loader))

    def steps():
        for _ in range(TRAIN_STEPS):
            images, labels = next(batches)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()

    return steps


def _forever(loader):
    while True:
        yield from loader


def regcli_trainer(splits, models: int = 1):
    """The real trainer: one GroupTrainer epoch of TRAIN_STEPS batches, `models` at once."""
    config = TrainConfig(epochs=100, limit_train=TRAIN_STEPS * BATCH, limit_test=BATCH)
    configs = [replace(config, seed=seed) for seed in range(models)]
    trainer = GroupTrainer(configs, *splits, torch.device("cpu"))
    epoch = iter(range(1, 10**6))
    return lambda: trainer.train_epoch(next(epoch))


def one_at_a_time(splits, models: int):
    trainers = [regcli_trainer(splits) for _ in range(models)]

    def run():
        for train_once in trainers:
            train_once()

    return run


def limit(train_split, network=Net):
    """No data pipeline at all: the same batches, already normalized and in memory."""
    model = network().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    head = train_split.head(TRAIN_STEPS * BATCH)
    images = torch.from_numpy(to_unit(head.images)).split(BATCH)
    labels = torch.from_numpy(head.labels).split(BATCH)

    def steps():
        for x, y in zip(images, labels, strict=True):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    return steps


def cpu_training(root: Path, splits) -> dict:
    runs = {
        "classic_workers_0": classic_pipeline(root, 0),
        "classic_workers_2": classic_pipeline(root, 2),
        "regcli": regcli_trainer(splits),
        "limit": limit(splits[0]),
        "limit_torch_dropout": limit(splits[0], notebook_net),
    }
    rates = interleaved_rates(runs, TRAIN_STEPS * BATCH)
    grouped = interleaved_rates(
        {
            "grouped": regcli_trainer(splits, GROUPED),
            "one_at_a_time": one_at_a_time(splits, GROUPED),
        },
        GROUPED * TRAIN_STEPS * BATCH,
        repeats=3,
    )
    return {**rates, "grouped_models": GROUPED, **{f"{k}_{GROUPED}": v for k, v in grouped.items()}}


def inference(test_split) -> dict:
    """PyTorch eager (eval, inference_mode) and onnxruntime, images per second by batch size."""
    model = Net().eval()
    session = onnx_session(to_onnx(model).SerializeToString())  # as `--backend onnx` opens it
    pixels = torch.from_numpy(to_unit(test_split.images))
    results = {}
    for batch in INFERENCE_BATCHES:
        chunks = list(pixels[: max(batch, 2_000 if batch == 1 else INFERENCE_IMAGES)].split(batch))
        as_numpy = [c.numpy() for c in chunks]
        images = sum(len(c) for c in chunks)

        def eager(chunks=chunks):
            with torch.inference_mode():
                for c in chunks:
                    model(c)

        def ort(as_numpy=as_numpy):
            for c in as_numpy:
                session.run(None, {INPUT_NAME: c})

        results[str(batch)] = interleaved_rates({"torch": eager, "onnx": ort}, images)
    return results


def wall_seconds(command: list[str]) -> float:
    """Median wall time of a command, after one untimed run that warms the file cache."""
    subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def exported_model(scratch: Path) -> Path:
    """The committed models/none if it has an ONNX file; else a quick one trained here."""
    committed = REPO / "models" / "none"
    if (committed / "model.onnx").is_file():
        return committed
    from regcli.inference.export import export_model

    config = TrainConfig(epochs=1, limit_train=2_000, limit_test=500)
    states, _ = train_group([config], *load_splits(), torch.device("cpu"))
    from regcli.store.checkpoints import save_run

    model_dir = scratch / "bench"
    save_run(model_dir, states[0].weights, config, [r.as_dict() for r in states[0].history], {})
    export_model(model_dir, data_dir=REPO / "data")
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


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under a folder (links not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def install_size() -> dict:
    """What `make` installs: the virtual environment, and PyTorch's and NVIDIA's share of it."""
    site = Path(torch.__file__).resolve().parents[1]
    nvidia = [p for p in site.iterdir() if p.name.startswith(("nvidia", "triton", "cuda"))]
    return {
        "environment_bytes": folder_bytes(Path(sys.prefix)),
        "torch_bytes": folder_bytes(site / "torch"),
        "cuda_libraries_bytes": sum(folder_bytes(p) for p in nvidia if p.is_dir()),
        "torch_build": torch.__version__,
        "cuda_build": torch.version.cuda,
    }


def load_splits():
    return load_split(REPO / "data", "train"), load_split(REPO / "data", "test")


def measure_cpu() -> dict:
    splits = load_splits()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        training = cpu_training(raw_idx_folder(scratch / "torchvision"), splits)
        model_dir = exported_model(scratch)
        evaluate = [
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
        return {
            "settings": {"batch": BATCH, "train_steps": TRAIN_STEPS, "repeats": REPEATS},
            "training": training,
            "inference": inference(splits[1]),
            "evaluate_onnx_seconds": wall_seconds(evaluate),
            "torch_import_seconds": wall_seconds([sys.executable, "-c", "import torch"]),
            "layouts": measure_layouts(),
            "install": install_size(),
        }


def study(configs: list[TrainConfig], splits, device, *, group_size: int, deterministic: bool):
    """Train configs as `regcli train` would (groups of group_size); wall time, images/s, and
    each model's final test accuracy."""
    synchronize(device)
    started = time.perf_counter()
    accuracies, graphs = [], []
    for i in range(0, len(configs), group_size):
        states, info = train_group(
            configs[i : i + group_size], *splits, device, deterministic=deterministic
        )
        accuracies += [s.history[-1].test_accuracy for s in states]
        graphs.append(info["cuda_graphs"])
    synchronize(device)
    seconds = time.perf_counter() - started
    images = sum(c.epochs * (c.limit_train or 60_000) for c in configs)  # training images
    return {
        "models": len(configs),
        "group_size": group_size,
        "deterministic": deterministic,
        "cuda_graphs": all(graphs),
        "seconds": seconds,
        "images_per_second": images / seconds,
        "epochs": configs[0].epochs,
        "final_test_accuracy": accuracies,
    }


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def variant_configs(seeds: list[int], base: TrainConfig) -> list[TrainConfig]:
    return [
        replace(base, l1=l1, weight_decay=wd, seed=seed)
        for seed in seeds
        for l1, wd in VARIANTS.values()
    ]


def measure_gpu(device, base: TrainConfig) -> dict:
    splits = load_splits()
    four = variant_configs([1], base)  # the single-seed study: seed 1, as make all-variants
    twenty = variant_configs([0, 1, 2, 3, 4], base)  # seeds 0..4, as make all-variants SEEDS=5
    warm_up = replace(four[0], epochs=1, limit_train=2_048, limit_test=1_000)
    train_group([warm_up], *splits, device)  # CUDA context, cuDNN and cuBLAS handles
    studies = {
        "four_variants": study(four, splits, device, group_size=4, deterministic=True),
        "four_variants_fast": study(four, splits, device, group_size=4, deterministic=False),
        "twenty_models": study(twenty, splits, device, group_size=20, deterministic=True),
        "one_model": study(four[3:], splits, device, group_size=1, deterministic=True),
        "four_one_at_a_time": study(four, splits, device, group_size=1, deterministic=True),
    }
    return {
        "variants": list(VARIANTS),
        "strengths": {"l1": STUDY_L1, "weight_decay": STUDY_WD},
        "studies": studies,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=15, help="the studies' epochs")
    parser.add_argument(
        "--smoke", action="store_true", help="the studies on 512 images, to check the script"
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/results[-<gpu>].json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine(str(device)), "torch_threads": torch.get_num_threads()},
        "versions": versions(),
        "device": device.type,
    }
    if device.type == "cuda" or args.smoke:
        base = TrainConfig(epochs=args.epochs)
        if args.smoke:
            base = replace(base, epochs=1, limit_train=512, limit_test=256)
        results.update(measure_gpu(device, base))
        gpu = results["machine"].get("gpu", "smoke-test").lower().replace(" ", "-")
        out = args.out or REPO / "benchmarks" / f"results-{gpu}.json"
    else:
        results.update(measure_cpu())
        out = args.out or REPO / "benchmarks" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
