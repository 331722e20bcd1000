"""What regularization does to the weights: their distribution, and how well they prune.

L1 pushes weights towards exactly zero (a constant pull, whatever their size); L2 shrinks them in
proportion to their size and rarely makes them zero. Two measurements show the difference: the
distribution of weight magnitudes, and test accuracy after magnitude pruning (zero the smallest
weights of the whole network, no retraining): a network with many near-zero weights loses less.
Pruned accuracies can be cached beside a model (pruning.json), keyed by the sha256 of its
model.pt, so that a report over 70 models recomputes only what changed; a cache whose numbers
are not finite percentages is measured again.
"""

import copy
from pathlib import Path

import torch

from regcli.core.config import Backend
from regcli.core.errors import UsageError
from regcli.core.tables import render
from regcli.inference.backends import current_onnx_bytes, onnx_predictor, open_onnx
from regcli.inference.onnx_sizes import graph_of, sizes_with, swap_weights
from regcli.inference.scoring import score
from regcli.nn.model import regularized_parameters, torch_predictor
from regcli.nn.pruning import apply_mask, magnitude_mask
from regcli.store.checkpoints import load_model
from regcli.store.layout import ONNX_NAME, PRUNING_CACHE_NAME, model_group, model_label
from regcli.store.measure_cache import cached_numbers

THRESHOLDS = (1e-3, 1e-2, 1e-1)  # |w| below each of these counts as "small"
NEAR_ZERO = THRESHOLDS[0]  # |w| below this counts as a near-zero weight


def prunable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The conv weights, by state_dict name: what L1 and L2 act on by default."""
    weights = {id(p) for p in regularized_parameters(model, "weights")}
    return {name: p for name, p in model.named_parameters() if id(p) in weights}


def weight_stats(model: torch.nn.Module) -> dict:
    """Norms and shares of small weights over the prunable weights, and the values themselves."""
    flat = torch.cat([w.detach().flatten() for w in prunable(model).values()])
    return {
        "count": flat.numel(),
        "l1_norm": float(flat.abs().sum()),
        "l2_norm": float(flat.norm()),
        **{f"below_{t:g}": float((flat.abs() < t).float().mean()) for t in THRESHOLDS},
        "values": flat.numpy(),
    }


def near_zero_share(stats: dict) -> float:
    """The share (%) of near-zero weights (|w| < NEAR_ZERO) in weight_stats' numbers."""
    return 100 * stats[f"below_{NEAR_ZERO:g}"]


def model_weights(model_dir: Path, label: str | None = None) -> dict:
    """A model's weight statistics, labelled for tables and figures."""
    return {
        "model": label or model_label(model_dir),
        "group": model_group(model_dir),
        **weight_stats(load_model(model_dir)[0]),
    }


def weights_table(rows: list[dict]) -> str:
    """`regcli weights`: a row per model, its norms and shares of small weights (%)."""
    headers = ["model", "weights", "L1 norm", "L2 norm", *(f"|w|<{t:g} %" for t in THRESHOLDS)]
    body = [
        [
            r["model"],
            f"{r['count']:,}",
            f"{r['l1_norm']:.1f}",
            f"{r['l2_norm']:.2f}",
            *(f"{100 * r[f'below_{t:g}']:.2f}" for t in THRESHOLDS),
        ]
        for r in rows
    ]
    return render(headers, body)


def parse_sparsities(text: str, with_dense: bool = True) -> list[float]:
    """The fractions given, sorted, once each (with 0, the dense network, unless told not)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise UsageError(f"--sparsity {text!r}: give fractions like 0.5,0.7,0.9") from error
    if not values or not all(0 <= v < 1 for v in values):
        raise UsageError(f"--sparsity {text!r}: each fraction must be in [0, 1)")
    return sorted({0.0, *values} if with_dense else set(values))


def pruned_state(model: torch.nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """The prunable weights with the round(sparsity * N) smallest magnitudes set to zero."""
    weights = {name: w.detach() for name, w in prunable(model).items()}
    return apply_mask(weights, magnitude_mask(weights, sparsity))


def pruned_predictors(model_dir: Path, model: torch.nn.Module, backend: str, device: str = "cpu"):
    """A function from pruned weights to a predictor with those weights in place.

    The ONNX file is checked and read once; each call only swaps its weights.
    """
    if backend == Backend.torch:

        def torch_with(state: dict):
            pruned = copy.deepcopy(model)
            pruned.load_state_dict({**model.state_dict(), **state})
            return torch_predictor(pruned.eval().to(device))

        return torch_with
    import onnx

    onnx_path = Path(model_dir) / ONNX_NAME
    graph = onnx.load_from_string(current_onnx_bytes(model_dir))  # read once, checked

    def onnx_with(state: dict):
        swap_weights(graph, state, str(onnx_path))
        return onnx_predictor(open_onnx(graph.SerializeToString(), onnx_path), onnx_path)

    return onnx_with


def prune_curve(
    model_dir: Path,
    sparsities: list[float],
    *,
    backend: str,
    test,
    device: str = "cpu",
    label: str | None = None,
    sizes: bool = False,
) -> dict:
    """Test accuracy of the model after magnitude pruning at each sparsity (and with `sizes`,
    the size of its ONNX file, bytes and zipped, with those weights zeroed)."""
    model, _ = load_model(model_dir)
    predictor_with = pruned_predictors(model_dir, model, backend, device)
    graph = graph_of(model_dir, model) if sizes else None
    points = []
    for sparsity in sparsities:
        state = pruned_state(model, sparsity)
        accuracy = score(predictor_with(state), test).accuracy
        size = sizes_with(graph, state) if graph is not None else {}
        points.append({"sparsity": sparsity, "accuracy": accuracy, **size})
    return {
        "model": label or model_label(model_dir),
        "group": model_group(model_dir),
        "backend": backend,
        "points": points,
    }


def cached_pruned_accuracies(
    model_dir: Path, model, sha256: str, sparsities, test, backend: str, device: str
) -> dict[float, float]:
    """Accuracy (%) after zeroing each share in `sparsities`, from the cache when it is for
    this very model.pt (sha256), this backend and this test set; the cache is refreshed
    otherwise (unless the folder is locked or read-only: the numbers are returned anyway)."""
    key = {"source_sha256": sha256, "backend": backend, "test_images": len(test)}
    predictors = []

    def measure(level: str) -> float:
        if not predictors:
            predictors.append(pruned_predictors(model_dir, model, backend, device))
        return 100 * score(predictors[0](pruned_state(model, float(level))), test).accuracy

    wanted = [repr(s) for s in sparsities]
    path = Path(model_dir) / PRUNING_CACHE_NAME
    known = cached_numbers(path, key, wanted, measure, device=device)
    return {s: known[repr(s)] for s in sparsities}
