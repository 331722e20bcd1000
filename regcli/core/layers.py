"""The layers of regcli, bottom first: a package imports only from its own layer's package and
from the layers below it (peers in one layer do not import each other).

This table is the one statement of the architecture: tests/test_layers.py checks every import
against it (function-level and TYPE_CHECKING ones included), and the internals page of the docs
(docs/internals.md) is generated from it, each package described by its own docstring.
"""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("data", "nn", "plots"),
    ("store",),
    ("inference",),
    ("train",),
    ("jobs",),
    ("studies",),
    ("cli",),
)
TOP_LEVEL = ("__init__", "__main__")  # regcli/__init__.py (the version) and `python -m regcli`


def rank(package: str) -> int:
    """The layer a package belongs to (0: core)."""
    for number, packages in enumerate(LAYERS):
        if package in packages:
            return number
    raise KeyError(f"regcli.{package} is in no layer: add it to regcli/core/layers.py")
