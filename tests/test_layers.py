"""The layers hold: every import of every module (function-level and TYPE_CHECKING ones
included) flows downwards through regcli/core/layers.py's table, and the table, the packages on
disk and the generated internals page agree."""

import ast
from pathlib import Path

import pytest

from regcli.core.layers import LAYERS, TOP_LEVEL, rank

PACKAGE = Path(__file__).resolve().parents[1] / "regcli"


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) of every regcli import anywhere in a module's tree."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("regcli")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "regcli":  # from regcli import <package or module>
                found += [(node.lineno, f"regcli.{a.name}") for a in node.names]
            elif node.module.startswith("regcli."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, f"<relative import {'.' * node.level}{node.module}>"))
    return found


def upward_imports(root: Path) -> list[str]:
    """One line per import that flows upward or sideways between two peers, or that names no
    layer: 'file:line: <from> (layer) imports <to> (layer)'."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if len(parts) == 1:
            if parts[0] not in TOP_LEVEL:
                problems.append(f"{path}: a module outside every package (add it to a layer)")
            continue
        here = parts[0]
        for line, module in imported(ast.parse(path.read_text(), str(path))):
            target = module.split(".")
            if module.startswith("<"):
                problems.append(f"{path}:{line}: {module}: import through the layer's package")
                continue
            if len(target) < 2 or target[1] in ("__version__",):
                continue  # regcli itself: the version
            there = target[1]
            if there == here:
                continue
            low, high = rank(there), rank(here)
            if low >= high:
                side = "its peer" if low == high else "a layer above it"
                problems.append(
                    f"{path.relative_to(root.parent)}:{line}: {here} (layer {high}) imports "
                    f"{there} (layer {low}), {side}"
                )
    return problems


def test_every_import_flows_down_the_layers():
    assert upward_imports(PACKAGE) == []


def test_every_package_is_in_the_table_and_every_layer_is_a_package():
    on_disk = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert on_disk == {name for layer in LAYERS for name in layer}
    for package in on_disk:
        assert ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))


def plant(tmp_path: Path, package: str, name: str, text: str) -> Path:
    """A copy of the package tree with one module added."""
    copy = tmp_path / "regcli"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (copy / package / name).write_text(text)
    return copy


@pytest.mark.parametrize(
    ("package", "text", "said"),
    [
        ("core", "from regcli.store.layout import ONNX_NAME\n", "core (layer 0) imports store"),
        (
            "nn",
            "def f():\n    from regcli.plots.figures import save_figure\n",
            "nn (layer 1) imports plots (layer 1), its peer",
        ),
        (
            "store",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import regcli.cli.app\n",
            "store (layer 2) imports cli (layer 7)",
        ),
        ("train", "from regcli import jobs\n", "train (layer 4) imports jobs (layer 5)"),
        ("jobs", "from .runs import Done\n", "relative import"),
    ],
)
def test_a_planted_upward_import_is_named_with_its_file_line_and_layers(
    tmp_path, package, text, said
):
    copy = plant(tmp_path, package, "planted.py", '"""planted"""\n\n' + text)
    problems = upward_imports(copy)
    assert len(problems) == 1
    assert f"{package}/planted.py:" in problems[0] and said in problems[0]
    assert upward_imports(PACKAGE) == []  # the real tree is untouched


def test_a_module_outside_the_packages_is_refused(tmp_path):
    copy = plant(tmp_path, ".", "loose.py", '"""loose"""\n')
    assert any("loose.py: a module outside every package" in p for p in upward_imports(copy))


def module_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the regcli modules it imports anywhere (a package's __init__ as the package)."""
    names = {".".join(p.relative_to(root.parent).with_suffix("").parts) for p in root.rglob("*.py")}
    names = {n.removesuffix(".__init__") for n in names}
    graph = {}
    for path in root.rglob("*.py"):
        here = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        )
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in names:
                subs = {f"{node.module}.{a.name}" for a in node.names} & names
                deps |= subs or {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & names
        graph[here] = deps - {here}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, in order), or None."""
    state, trail = {}, []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        trail.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                return trail[trail.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[module] = "done"
        trail.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycle_even_through_function_level_imports(tmp_path):
    assert find_cycle(module_graph(PACKAGE)) is None
    copy = plant(tmp_path, "jobs", "sweep.py", (PACKAGE / "jobs" / "sweep.py").read_text())
    runner = copy / "jobs" / "runner.py"
    runner.write_text(runner.read_text() + "\n\ndef late():\n    from regcli.jobs import sweep\n")
    assert find_cycle(module_graph(copy)) == [
        "regcli.jobs.runner",
        "regcli.jobs.sweep",
        "regcli.jobs.runner",
    ]
