"""The grouped trainer on CUDA: graph capture changes nothing, a seed fixes the numbers, resume is
bit-identical, a diverging member is masked. (That one step of a member is its textbook SGD step
alone is tests/test_grouped.py's check, on the CPU and on CUDA.)

Skipped without a GPU. Runs without pytest too (`python3 tests/test_cuda.py`), as on a GPU
machine that has PyTorch but no test tools.
"""

import sys
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from regcli.core.config import TrainConfig  # noqa: E402
from regcli.core.errors import Interrupted  # noqa: E402
from regcli.data.mnist import load_split  # noqa: E402
from regcli.train.trainer import StopFlag, train_group  # noqa: E402
from tests.helpers import strip  # noqa: E402

try:
    import pytest

    pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
except ImportError:  # standalone on a GPU machine
    pytest = None

SMALL = TrainConfig(epochs=3, limit_train=1_000, limit_test=500)  # 7 full batches + a tail
MIXED = [
    replace(SMALL, seed=1),
    replace(SMALL, seed=2, l1=1e-4),
    replace(SMALL, seed=3, weight_decay=1e-3, reg_scope="all", lr=0.05),
]


def splits():
    data = REPO / "data"
    return load_split(data, "train"), load_split(data, "test")


def run(configs, **options):
    return train_group(configs, *splits(), torch.device("cuda"), **options)


def same_weights(a, b) -> bool:
    return all(
        torch.equal(x.weights[k], y.weights[k])
        for x, y in zip(a, b, strict=True)
        for k in x.weights
    )


def test_graph_capture_is_used_and_matches_eager():
    configs = [replace(c, dropout=0.0) for c in MIXED]  # no random masks: eager = graph
    graph_states, info = run(configs)
    eager_states, eager_info = run(configs, graphs=False)
    assert info["cuda_graphs"] and not eager_info["cuda_graphs"]
    for g, e in zip(strip(graph_states), strip(eager_states), strict=True):
        for gr, er in zip(g, e, strict=True):
            for key, value in gr.items():
                assert abs(value - er[key]) <= 1e-5 * max(1.0, abs(value)), (key, value, er[key])


def test_same_seeds_same_numbers():
    first, _ = run(MIXED)
    again, _ = run(MIXED)
    assert strip(first) == strip(again) and same_weights(first, again)
    other, _ = run([replace(MIXED[0], seed=7), *MIXED[1:]])
    assert strip(other)[0] != strip(first)[0]


def test_resume_continues_bit_identically():
    straight, _ = run(MIXED)
    saved, flag = [], StopFlag()

    def keep(states):
        saved.append(states)
        flag.signal_number = 2  # as Ctrl-C would, once the first epoch is saved

    try:
        run(MIXED, on_epoch=keep, stop=flag)
        raise AssertionError("the stop flag did not stop training")
    except Interrupted:
        pass
    resumed, _ = run(MIXED, resume=saved[-1])
    assert strip(resumed) == strip(straight) and same_weights(resumed, straight)


def test_a_diverging_member_is_masked_and_the_others_go_on():
    configs = [replace(MIXED[0], lr=1e5), MIXED[1]]
    states, _ = run(configs)
    assert states[0].diverged and states[0].diverged["epoch"] == 1
    assert states[1].diverged is None and len(states[1].history) == SMALL.epochs
    alone, _ = run([MIXED[1]])
    survivor, solo = strip(states)[1], strip(alone)[0]
    # it learns as it would alone (only the shared dropout masks differ)
    assert survivor[-1]["train_loss"] < 0.8 * survivor[0]["train_loss"]
    assert abs(survivor[-1]["train_loss"] - solo[-1]["train_loss"]) < 0.1 * solo[-1]["train_loss"]


def test_cudnn_benchmark_mode_trains():
    states, info = run(MIXED[:2], deterministic=False)
    assert info["cuda_graphs"] and all(len(s.history) == SMALL.epochs for s in states)


if __name__ == "__main__":
    import time
    import traceback

    failed = 0
    for name, test in list(globals().items()):
        if name.startswith("test_") and callable(test):
            started = time.perf_counter()
            try:
                test()
                print(f"PASS {name} ({time.perf_counter() - started:.1f} s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
    sys.exit(1 if failed else 0)
