"""The README's speed tables are the committed bench results, as `make bench` writes them."""

import importlib.util
import json

from regcli.artifacts import readme_markers
from tests.conftest import REPO


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_readme_speed_tables_are_the_committed_results():
    bench = load_bench()
    results = json.loads((REPO / "benchmarks" / "results.json").read_text())
    start, end = readme_markers(*bench.README_SECTION)
    readme = (REPO / "README.md").read_text()
    assert readme.split(start)[1].split(end)[0].strip() == bench.readme_section(results)
    # every target is judged, and a missed one says why
    assert {t["target"] for t in results["targets"]} >= {
        "regcli trainer >= 0.85 x limit",
        "regcli evaluate --backend onnx < 2 s wall",
    }
    assert all(t["met"] or t["why"] for t in results["targets"])
