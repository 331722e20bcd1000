"""Seed groups as read back from disk, checked before anything is averaged over them.

Training refuses to mix configurations; a group read back must be refused just as firmly, since
folders can be copied or edited by hand: the seed in each seed-<k> folder's config must be k, the
members must share every setting but the seed, and no two members may hold identical weights (a
copied folder would pass for two seeds and shrink the spread to nothing).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from regcli.core.config import TrainConfig, check_same_settings
from regcli.core.errors import RegcliError
from regcli.store.layout import seed_number


@dataclass(frozen=True)
class Member:
    """One model folder of a group: where it is, its config, and a digest of its weights."""

    folder: Path
    config: TrainConfig
    weights_sha256: str | None  # None for a member without weights (diverged)


def weights_sha256(state_dict: dict) -> str:
    """A digest of a state dict's names, shapes and values (of two copies of one run's
    weights, whatever file they were saved in, the digests are equal)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def check_seed_folder(folder: Path, config: TrainConfig) -> None:
    """A seed-<k> folder must hold a run of seed k (a copy of another seed's folder does not)."""
    k = seed_number(folder)
    if k is not None and config.seed != k:
        raise RegcliError(
            f"{folder}: its config says seed {config.seed}, but the folder is seed-{k} "
            "(a copied folder?); train it again or move it out"
        )


def check_group(members: list[Member], what: str, ignore: tuple[str, ...] = ("seed",)) -> None:
    """Refuse a group that mixes settings (but those in `ignore`: the seed, and for pruned runs
    their sources), misnames a seed or holds one run twice."""
    for member in members:
        check_seed_folder(member.folder, member.config)
    check_same_settings([(str(m.folder), m.config) for m in members], what, ignore)
    seen: dict[str, Path] = {}
    for member in (m for m in members if m.weights_sha256 is not None):
        twin = seen.setdefault(member.weights_sha256, member.folder)
        if twin != member.folder:
            raise RegcliError(
                f"{what}: {member.folder} and {twin} hold identical weights (one is a copy of "
                "the other); a group's seeds must be separate runs"
            )
