"""What the figures read: the shape of the rows the studies hand them, as Protocols.

The studies compute (studies/compare.py's Series, studies/path.py's PathCell, studies/atlas.py's
Atlas, studies/pruning.py's PruningStudy) and the figures draw; a figure knows only these
attributes, so plots/ never imports what calls it. Every interval is a 95% half width.
"""

from collections.abc import Sequence
from typing import Protocol

from regcli.core.config import Penalty


class Stats(Protocol):
    """One quantity over a group of seeds (studies.stats.SeedStats)."""

    mean: float
    half_width: float | None  # of the 95% t interval of the mean; None for one seed


class Band(Protocol):
    """A curve per epoch: the mean and the seeds' range (studies.compare.Band)."""

    mean: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]


class SeriesRow(Protocol):
    """A model or a seed group's history (studies.compare.Series)."""

    label: str
    group: str
    seeds: int
    epochs: Sequence[int]
    accuracy: Band
    loss: Band


class Shifted(Protocol):
    accuracy: Stats


class PathRow(Protocol):
    """A cell of the path (studies.path.PathCell)."""

    path: Penalty
    strength: float
    diverged: int  # seeds that diverged
    accuracy: Stats | None
    near_zero_share: Stats | None
    l1_norm: Stats | None
    pruned: dict[float, float]  # share zeroed -> mean accuracy (%)
    shifted: dict[str, Shifted]


class AtlasCell(Protocol):
    strength: float
    versus_none: object | None  # a Difference: estimate, half_width
    gap: float | None


class AtlasRows(Protocol):
    """The atlas (studies.atlas.Atlas): its sizes, cells by size and penalty, its choices."""

    sizes: list[int]

    def at(self, size: int, penalty: Penalty) -> list: ...

    def recommended(self, size: int, penalty: Penalty) -> AtlasCell | None: ...


class PruningRows(Protocol):
    """The pruning study (studies.pruning.PruningStudy)."""

    strengths: dict[Penalty, float]
    sparsities: list[float]
    retraining: dict  # a retrained mode -> (epochs, steps, lr)
    dense: dict[Penalty, Stats]

    def point(self, penalty: Penalty, mode, sparsity: float): ...
