"""The README's speed sections are the committed bench results, as `make bench` judges them."""

import importlib.util
import json

import pytest

from regcli.core.files import readme_markers
from tests.conftest import REPO


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(markers) -> str:
    start, end = readme_markers(*markers)
    return (REPO / "README.md").read_text().split(start)[1].split(end)[0].strip()


def test_readme_cpu_speed_section_is_the_committed_results():
    judge = load("judge")
    results = json.loads((REPO / "benchmarks" / "results.json").read_text())
    assert section(judge.CPU_SECTION) == judge.cpu_section(results)
    verdicts = judge.judge_cpu(results)
    assert {v["target"] for v in verdicts} == {t.text() for t in judge.CPU_TARGETS.values()}
    assert all(v["met"] or v["why"] for v in verdicts)


def test_readme_gpu_section_is_the_committed_gpu_results():
    judge = load("judge")
    assert section(judge.GPU_SECTION) == judge.gpu_sections()
    for results in judge.gpu_results():
        verdicts = judge.judge_gpu(results)
        assert len(verdicts) == len(judge.GPU_TARGETS) + 2
        assert all(v["met"] or v["why"] for v in verdicts)
        studies = results["studies"]
        assert studies["twenty_models"]["models"] == 20 and studies["one_model"]["models"] == 1
        assert all(len(s["final_test_accuracy"]) == s["models"] for s in studies.values())


def test_a_missed_targets_reason_is_computed_from_the_numbers():
    judge = load("judge")
    results = json.loads((REPO / "benchmarks" / "results.json").read_text())
    slower = json.loads(json.dumps(results))
    slower["training"]["classic_workers_2"] = slower["training"]["regcli"] * 2
    (verdict,) = [v for v in judge.judge_cpu(slower) if "classic" in v["target"]]
    assert (
        not verdict["met"]
        and f"{slower['training']['limit'] / (2 * slower['training']['regcli']):.2f}x"
        in verdict["why"]
    )


@pytest.mark.parametrize(
    "unit, value, met", [("x", 0.84, False), ("x", 0.86, True), ("s", 2.1, False), ("s", 1.9, True)]
)
def test_targets_know_which_way_is_better(unit, value, met):
    target = load("judge").Target("t {needed}", 0.85 if unit == "x" else 2.0, unit)
    assert target.met(value) is met
