"""Pruned runs (`regcli prune --retrain`): one request per source model and sparsity, and what
pruning buys on disk (the ONNX file's size zipped, pruned against dense).

A pruned run goes in <models-dir>/<name>[/size-<n>]/<cell>/seed-<k>: the cell names the
source's strengths and the pruning (layout.pruned_cell_name), k is the source's seed, so the
runs of one source cell form a seed group like the sweep's. The runner trains them as any run
(reused when finished with the same config, resumed when interrupted, grouped on a GPU), from
the source's weights, whose sha256 the config holds.
"""

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import numpy_helper

from regcli.backends import current_onnx_bytes
from regcli.checkpoints import checkpoint_config, load_checkpoint_with_hash, model_from_checkpoint
from regcli.config import RETRAIN_LR
from regcli.errors import RegcliError, UsageError
from regcli.layout import SEED_PREFIX, pruned_cell_name, size_folder
from regcli.pruning import pruned_config, zipped_bytes
from regcli.runs import Plan, Request


@dataclass(frozen=True)
class Retraining:
    """How each pruned network is retrained: `regcli prune`'s --retrain, --iterative and
    --retrain-lr."""

    epochs: int  # per prune-then-retrain step
    steps: int = 1  # prune-then-retrain steps to the sparsity (1: one-shot)
    lr: float = RETRAIN_LR  # the retraining schedule's peak learning rate


def prune_requests(
    sources: list[Path], sparsities: list[float], retraining: Retraining, name: str
) -> list[Request]:
    """The pruned runs asked for: each source at each sparsity, into <name>/.../<cell>."""
    requests, taken = [], {}
    for source in sources:
        payload, sha256 = load_checkpoint_with_hash(source)
        config = checkpoint_config(payload, source)
        for sparsity in sparsities:
            pruned = pruned_config(
                config,
                sha256,
                sparsity=sparsity,
                retrain=retraining.epochs,
                steps=retraining.steps,
                lr=retraining.lr,
            )
            lr = None if retraining.lr == RETRAIN_LR else retraining.lr
            cell = pruned_cell_name(
                config.l1, config.weight_decay, sparsity, retraining.epochs, retraining.steps, lr
            )
            size = [size_folder(config.train_images)] if config.train_size else []
            folder = "/".join([name, *size, cell])
            where = f"{folder}/{SEED_PREFIX}{config.seed}"
            if where in taken:
                raise UsageError(
                    f"{taken[where]} and {source} would both be pruned into {where} (the same "
                    "strengths and seed); prune them with different --name"
                )
            taken[where] = source
            requests.append(Request(pruned, folder, seeded=True, start=Path(source)))
    return requests


def onnx_file(model_dir: Path) -> bytes:
    """The model's current ONNX export, as bytes (refused when missing or stale)."""
    return current_onnx_bytes(model_dir)


def graph_of(model_dir: Path, model) -> onnx.ModelProto:
    """The model's ONNX graph: its current export, else one exported in memory (nothing is
    written)."""
    try:
        return onnx.load_from_string(onnx_file(model_dir))
    except RegcliError:
        from regcli.export import to_onnx

        return to_onnx(model)


def sizes_with(graph: onnx.ModelProto, state: dict) -> dict:
    """The graph's size, and zipped, with `state`'s weights in place of its own."""
    copy = onnx.ModelProto()
    copy.CopyFrom(graph)
    held = {i.name: i for i in copy.graph.initializer}
    for name, value in state.items():
        if name not in held:
            raise RegcliError(f"the ONNX graph has no weight named {name}; export it again")
        held[name].CopyFrom(numpy_helper.from_array(value.detach().cpu().numpy(), name))
    return file_sizes(copy.SerializeToString())


def file_sizes(data: bytes) -> dict:
    return {"onnx_bytes": len(data), "zipped_bytes": zipped_bytes(data)}


DENSE_SIZES: dict[str, dict] = {}  # a source model.pt's sha256 -> its dense ONNX sizes


def pruned_result(model_dir: Path, source: Path, test, label: str) -> dict:
    """One retrained pruned run against its source: accuracy pruned without retraining and
    after it, and the ONNX sizes (bytes, zipped) of its export and of the dense source."""
    from regcli.weights import cached_pruned_accuracies

    payload, sha256 = load_checkpoint_with_hash(source)
    pruned = load_checkpoint_with_hash(model_dir)[0]
    config = checkpoint_config(pruned, model_dir)
    if config.pruned_from != sha256:
        raise RegcliError(f"{model_dir} was not pruned from {source}'s model.pt")
    model = model_from_checkpoint(payload, source)
    tested = test.head(config.limit_test)  # the images its accuracy was measured on
    before = cached_pruned_accuracies(
        source, model, sha256, [config.sparsity], tested, "torch", "cpu"
    )
    final = pruned["final"]["test_accuracy"]
    if sha256 not in DENSE_SIZES:  # one source, several levels: its export is sized once
        DENSE_SIZES[sha256] = sizes_with(graph_of(source, model), {})
    dense = DENSE_SIZES[sha256]
    return {
        "model": label,
        "source": str(source),
        "sparsity": config.sparsity,
        "steps": config.prune_steps,
        "retrain_epochs": config.epochs // config.prune_steps,
        "lr": config.lr,
        "pruned_accuracy": before[config.sparsity] / 100,
        "retrained_accuracy": final,
        **file_sizes(onnx_file(model_dir)),
        "dense_onnx_bytes": dense["onnx_bytes"],
        "dense_zipped_bytes": dense["zipped_bytes"],
    }


def start_weights(plan: Plan) -> dict | None:
    """A pruned run's initial weights: its source's, checked to be the very model.pt (sha256)
    its config names (None: a run that starts from its seed's weights)."""
    if plan.config.pruned_from is None:
        return None
    if plan.start is None:
        raise RegcliError(f"{plan.model_dir}: a pruned run needs its source model to start")
    payload, sha256 = load_checkpoint_with_hash(plan.start)
    if sha256 != plan.config.pruned_from:
        raise RegcliError(
            f"{plan.start}: its model.pt is not the one {plan.model_dir} was pruned from "
            "(it changed since); prune again with --force"
        )
    return model_from_checkpoint(payload, plan.start).state_dict()


def source_record(source: str | None) -> dict:
    return {"pruned_from": source} if source else {}
