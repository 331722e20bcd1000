"""Pruned runs (`regcli retrain`): their settings, one request per source model and sparsity, and
the check that a pruned run starts from the very weights its config names.

A pruned run's TrainConfig is its source's, with the retraining's epochs and learning rate, and
`pruned_from` (the sha256 of the source's model.pt: provenance from content), `sparsity` and
`prune_steps`, so that the identity check of a model folder covers the pruning too.

A pruned run goes in <models-dir>/<name>[/size-<n>]/<cell>/seed-<k>: the cell names the
source's strengths and the pruning (layout.pruned_cell_name), k is the source's seed, so the
runs of one source cell form a seed group like the sweep's. The runner trains them as any run
(reused when finished with the same config, resumed when interrupted, grouped on a GPU), from
the source's weights, whose sha256 the config holds.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from regcli.core.config import MAX_PRUNE_STEPS, MAX_RETRAIN_EPOCHS, RETRAIN_LR, TrainConfig
from regcli.core.errors import RegcliError, UsageError
from regcli.jobs.runs import Plan, Request
from regcli.store.checkpoints import (
    checkpoint_config,
    load_checkpoint_with_hash,
    model_from_checkpoint,
)
from regcli.store.layout import SEED_PREFIX, pruned_cell_name, size_folder


def pruned_config(
    source: TrainConfig,
    source_sha256: str,
    *,
    sparsity: float,
    retrain: int,
    steps: int = 1,
    lr: float = RETRAIN_LR,
) -> TrainConfig:
    """The config of `source` pruned to `sparsity` and retrained `retrain` epochs per step (the
    source's penalty, data, seed and schedule kind; one pass an epoch)."""
    if not 1 <= retrain <= MAX_RETRAIN_EPOCHS:
        raise UsageError(f"--retrain must be in 1..{MAX_RETRAIN_EPOCHS} epochs, got {retrain}")
    if not 1 <= steps <= MAX_PRUNE_STEPS:
        raise UsageError(f"--iterative must be in 1..{MAX_PRUNE_STEPS} steps, got {steps}")
    if steps > 1 and sparsity == 0:
        raise UsageError("--iterative prunes in steps: give a --sparsity above 0")
    if source.pruned_from is not None:
        raise UsageError("that model is itself a pruned run: prune its source instead")
    return replace(
        source,
        epochs=retrain * steps,
        lr=lr,
        min_steps=0,
        pruned_from=source_sha256,
        sparsity=sparsity,
        prune_steps=steps,
    )


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
