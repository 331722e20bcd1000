"""The CPU fast paths (regcli/nn/cpu_ops.py) give PyTorch's own results bit for bit: each kernel
against the one it replaces, and whole training steps with the fast paths on and off."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regcli.core.config import TrainConfig
from regcli.nn import cpu_ops
from regcli.nn.model import Dropout, MaxPool2d
from regcli.train.trainer import GroupTrainer


@pytest.fixture
def reference(monkeypatch):
    """Turns the fast paths off for one test (monkeypatch restores them)."""
    return lambda: monkeypatch.setattr(cpu_ops, "FAST", False)


def with_ties(shape, seed=0):
    """Random values rounded to a coarse grid, so that 2x2 windows often hold equal maxima
    (and signed zeros)."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=generator) * 2).round() / 2
    return x * torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)


@pytest.mark.parametrize("shape", [(3, 4, 24, 24), (2, 5, 6, 10), (1, 1, 2, 2)])
def test_max_pool_matches_torch_forward_and_backward_bit_for_bit(shape):
    x = with_ties(shape)
    top = F.max_pool2d(x, 2)
    hits = x == top.repeat_interleave(2, -1).repeat_interleave(2, -2)
    n, c, h, w = shape
    ties = hits.view(n, c, h // 2, 2, w // 2, 2).sum((3, 5)) > 1
    assert ties.any() or x.numel() < 16  # windows with equal maxima, to be broken
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    expected = x.clone().requires_grad_()
    F.max_pool2d(expected, 2).backward(grad)
    fast = x.clone().requires_grad_()
    pooled = cpu_ops.max_pool_2x2(fast)
    pooled.backward(grad)
    assert torch.equal(pooled, F.max_pool2d(x, 2))
    assert torch.equal(fast.grad, expected.grad)  # each window's first maximum, as its index


def test_max_pool_module_takes_the_fast_path_only_where_it_serves(reference):
    pool = MaxPool2d()
    assert cpu_ops.fast_pool(torch.zeros(2, 3, 24, 24))
    odd = with_ties((2, 3, 7, 9))  # max_pool2d drops the last row and column: torch's own path
    assert not cpu_ops.fast_pool(odd)
    assert torch.equal(pool(odd), F.max_pool2d(odd, 2))
    reference()
    assert not cpu_ops.fast_pool(torch.zeros(2, 3, 24, 24))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_dropout_mask_is_the_reference_where_bit_for_bit(p, reference):
    x = torch.randn(4, 16, 12, 12)
    fast_mask = cpu_ops.dropout_mask(x.shape, p, seed=7)
    assert fast_mask.dtype == torch.float32
    reference()
    keep = cpu_ops.dropout_mask(x.shape, p, seed=7)
    assert keep.dtype == torch.bool
    expected = torch.where(keep, x * (1 / (1 - p)), 0.0)  # the formula of PyTorch's own dropout
    assert torch.equal(cpu_ops.apply_dropout(x, fast_mask, p), expected)
    assert torch.equal(cpu_ops.apply_dropout(x, fast_mask, p), cpu_ops.apply_dropout(x, keep, p))


def test_dropout_module_gives_the_same_outputs_and_gradients_either_way(reference):
    x = torch.randn(8, 10, 26, 26)
    runs = []
    for switch in (lambda: None, reference):
        switch()
        torch.manual_seed(3)
        leaf = x.clone().requires_grad_()
        out = Dropout(0.05).train()(leaf)
        out.square().sum().backward()
        runs.append((out.detach(), leaf.grad))
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def trained_steps(mnist, steps: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """The flat weights after `steps` training steps of 128 images, the test logits, and the
    initial weights."""
    train, test = mnist
    config = TrainConfig(epochs=1, l1=1e-5, weight_decay=1e-4, limit_train=2_000, limit_test=300)
    trainer = GroupTrainer([config], train, test, torch.device("cpu"))
    trainer.net.train()
    trainer.draw_epoch(1)
    trainer.epoch_step.zero_()
    initial = trainer.params.vector.clone()
    for _ in range(steps):
        trainer.step(128)
    return trainer.params.vector.clone(), trainer.test_logits(), initial


def test_training_steps_are_bit_identical_with_and_without_the_fast_paths(mnist, reference):
    fast = trained_steps(mnist, 12)
    reference()
    slow = trained_steps(mnist, 12)
    assert torch.equal(fast[0], slow[0])
    assert np.array_equal(fast[1], slow[1])
    assert torch.equal(fast[2], slow[2]) and not torch.equal(fast[0], fast[2])  # it trained


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_keeps_freed_blocks_on_linux_and_not_when_turned_off(reference):
    assert cpu_ops.keep_freed_memory()
    reference()
    assert not cpu_ops.keep_freed_memory()
