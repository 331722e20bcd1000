"""Test helpers that need neither pytest nor the CLI, so that tests/test_cuda.py runs alone on
a GPU machine that has PyTorch but no test tools."""


def strip(states):
    """Each member's epoch records without their wall times (which differ from run to run)."""
    return [
        [{k: v for k, v in r.as_dict().items() if k != "seconds"} for r in s.history]
        for s in states
    ]
