"""The command line, a small package: `app` (the Typer app, errors, help, output), `options`
(the shared options, declared once), and the commands by theme: `training` (train, sweep,
runs), `models` (summary, export, evaluate, misclassified, predict), `studies` (compare,
report, weights) and `prune` (pruning, with or without retraining).

Core modules are imported inside the commands that need them, and only those load PyTorch:
`evaluate`, `misclassified` and `predict` with `--backend onnx` start without it.
"""

from regcli.cli import models, prune, studies, training  # noqa: F401  (they register commands)
from regcli.cli.app import app


def main():
    app()
