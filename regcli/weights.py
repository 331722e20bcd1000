"""What regularization does to the weights: their distribution, and how well they prune.

L1 pushes weights towards exactly zero (a constant pull, whatever their size); L2 shrinks them in
proportion to their size and rarely makes them zero. Two measurements show the difference: the
distribution of weight magnitudes, and test accuracy after magnitude pruning (zero the smallest
weights of the whole network, no retraining): a network with many near-zero weights loses less.
"""

import copy
from pathlib import Path

import onnx
import torch
from matplotlib.figure import Figure
from onnx import numpy_helper

from regcli.artifacts import ONNX_NAME, model_label
from regcli.backends import current_onnx, onnx_predictor, open_onnx
from regcli.checkpoints import load_model
from regcli.errors import RegcliError, UsageError
from regcli.scoring import score
from regcli.model import torch_predictor
from regcli.plots import save_figure
from regcli.regularization import regularized_parameters

THRESHOLDS = (1e-3, 1e-2, 1e-1)  # |w| below each of these counts as "small"


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
        "values": flat,
    }


def weights_figure(stats: list[dict]) -> Figure:
    """Histograms of weight values, one outline per model, counts on a log scale."""
    figure = Figure(figsize=(9, 4.5))
    axes = figure.subplots()
    largest = max(float(s["values"].abs().max()) for s in stats)
    bins = torch.linspace(-largest, largest, 121).numpy()
    for i, s in enumerate(stats):
        axes.hist(
            s["values"].numpy(),
            bins=bins,
            histtype="step",
            linewidth=1.4,
            color=f"C{i % 10}",
            label=s["model"],
        )
    axes.set_yscale("log")
    axes.set(title="Conv weight values", xlabel="weight", ylabel="count (log scale)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncols=2 if len(stats) > 5 else 1)
    return figure


def parse_sparsities(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise UsageError(f"--sparsity {text!r}: give fractions like 0.5,0.7,0.9") from error
    if not values or not all(0 <= v < 1 for v in values):
        raise UsageError(f"--sparsity {text!r}: each fraction must be in [0, 1)")
    return sorted({0.0, *values})


def pruned_state(model: torch.nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """The prunable weights with the round(sparsity * N) smallest magnitudes set to zero."""
    weights = prunable(model)
    flat = torch.cat([w.detach().flatten() for w in weights.values()])
    count = round(sparsity * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[flat.abs().argsort(stable=True)[:count]] = False
    pruned, start = {}, 0
    for name, w in weights.items():
        mask = keep[start : start + w.numel()].view_as(w)
        pruned[name] = w.detach() * mask
        start += w.numel()
    return pruned


def pruned_predictors(model_dir: Path, model: torch.nn.Module, backend: str):
    """A function from pruned weights to a predictor with those weights in place.

    The ONNX file is checked and read once; each call only swaps its weights.
    """
    if backend == "torch":

        def torch_with(state: dict):
            pruned = copy.deepcopy(model)
            pruned.load_state_dict({**model.state_dict(), **state})
            return torch_predictor(pruned.eval())

        return torch_with
    current_onnx(model_dir)  # exists, loads, and matches model.pt
    onnx_path = Path(model_dir) / ONNX_NAME
    graph = onnx.load(str(onnx_path))
    initializers = {i.name: i for i in graph.graph.initializer}

    def onnx_with(state: dict):
        for name, value in state.items():
            if name not in initializers:
                raise RegcliError(f"{onnx_path}: no weight named {name}; export it again")
            initializers[name].CopyFrom(numpy_helper.from_array(value.numpy(), name))
        return onnx_predictor(open_onnx(graph.SerializeToString(), onnx_path))

    return onnx_with


def prune_curve(model_dir: Path, sparsities: list[float], backend: str, test) -> dict:
    """Test accuracy of the model after magnitude pruning at each sparsity."""
    model, _ = load_model(model_dir)
    predictor_with = pruned_predictors(model_dir, model, backend)
    points = []
    for sparsity in sparsities:
        accuracy = score(predictor_with(pruned_state(model, sparsity)), test).accuracy
        points.append({"sparsity": sparsity, "accuracy": accuracy})
    return {"model": model_label(model_dir), "backend": backend, "points": points}


def pruning_figure(curves: list[dict]) -> Figure:
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    for i, curve in enumerate(curves):
        axes.plot(
            [100 * p["sparsity"] for p in curve["points"]],
            [100 * p["accuracy"] for p in curve["points"]],
            marker="o",
            color=f"C{i % 10}",
            linestyle=["-", "--", "-.", ":"][(i // 10) % 4],
            label=curve["model"],
        )
    axes.set(
        title="Magnitude pruning without retraining",
        xlabel="weights set to zero (%)",
        ylabel="test accuracy (%)",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncols=2 if len(curves) > 5 else 1)
    return figure


def compare_weights(model_dirs: list[Path], figure_path: Path) -> list[dict]:
    """Weight statistics of each model (values included) and their histograms in one figure."""
    stats = [{"model": model_label(d), **weight_stats(load_model(d)[0])} for d in model_dirs]
    save_figure(weights_figure(stats), figure_path)
    return stats


def compare_pruning(
    model_dirs: list[Path], sparsities: list[float], backend: str, test, figure_path: Path
) -> list[dict]:
    """Each model's accuracy-versus-sparsity curve, all in one figure."""
    curves = [prune_curve(d, sparsities, backend, test) for d in model_dirs]
    save_figure(pruning_figure(curves), figure_path)
    return curves
