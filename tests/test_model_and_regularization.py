"""The network and what L1 and L2 touch: parameter count, layer summary, regularization scopes,
regcli's dropout."""

import pytest
import torch
from torch import nn

from regcli.inference.scoring import to_unit
from regcli.nn.model import Dropout, Net, count_parameters, layer_summary, regularized_parameters
from regcli.train.augment import RandomRotation


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2, bias=True)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 1, bias=True)


def test_scope_weights_is_conv_and_linear_weights_only():
    model = Tiny()
    assert [id(p) for p in regularized_parameters(model, "weights")] == [
        id(model.conv.weight),
        id(model.fc.weight),
    ]
    net = Net()
    convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [id(p) for p in regularized_parameters(net, "weights")] == [id(w) for w in convs]


def test_scope_all_is_every_parameter():
    model = Tiny()
    assert len(regularized_parameters(model, "all")) == len(list(model.parameters())) == 6


def test_model_is_under_ten_thousand_parameters_and_maps_to_ten_logits():
    model = Net()
    assert 5_000 < count_parameters(model) < 10_000
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


def test_layer_summary_adds_up_and_ends_seeing_the_whole_image():
    model = Net()
    rows = layer_summary(model)
    assert sum(r["parameters"] for r in rows) == count_parameters(model)
    assert rows[-1]["output_shape"] == [10]
    fields = [r["receptive_field"] for r in rows]
    assert fields == sorted(fields) and fields[-1] >= 28


def unit_tensor(images):
    """The model's input for uint8 images, as the trainer's tensors."""
    return torch.from_numpy(to_unit(images))


@pytest.mark.parametrize("p", [0.05, 0.5])
def test_dropout_drops_a_fraction_p_and_keeps_the_expected_value(p):
    x = torch.rand(64, 16, 24, 24) + 0.5  # 589,824 units, none of them zero
    torch.manual_seed(0)
    out = Dropout(p).train()(x)
    dropped = (out == 0).double().mean().item()
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(dropped - p) < 5 * sigma
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p))  # survivors rescaled like nn.Dropout
    assert out.sum().item() == pytest.approx(x.sum().item(), rel=0.01)
    # masks are independent across units: neighbours are dropped together only by chance
    pairs = (~kept[..., 1:] & ~kept[..., :-1]).double().mean().item()
    assert pairs == pytest.approx(p * p, rel=0.1)


def test_dropout_follows_the_torch_seed_and_is_the_identity_in_eval():
    x = torch.rand(8, 10, 26, 26)
    layer = Dropout(0.05).train()
    torch.manual_seed(3)
    first, second = layer(x), layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), first) and not torch.equal(first, second)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_dropout_gradient_flows_through_kept_units_only():
    x = torch.rand(4, 10, 26, 26, requires_grad=True)
    out = Dropout(0.2).train()(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float() / 0.8)


def test_rotation_keeps_shape_dtype_and_range(mnist):
    images = mnist[1].images[:64]
    rotated = RandomRotation(7.0)(torch.from_numpy(images), torch.Generator().manual_seed(0))
    assert rotated.shape == (64, 1, 28, 28) and rotated.dtype == torch.float32
    assert rotated.min() >= 0 and rotated.max() <= 1.0 + 1e-6
    # ink is moved, not created or lost (bilinear resampling, digits away from the border)
    assert torch.allclose(rotated.sum((1, 2, 3)), unit_tensor(images).sum((1, 2, 3)), rtol=0.03)


def test_zero_degree_rotation_is_the_identity(mnist):
    images = mnist[1].images[:32]
    assert torch.equal(RandomRotation(0.0)(torch.from_numpy(images)), unit_tensor(images))
    table = RandomRotation(7.0)
    zero = (table.angles == 0).nonzero().item()
    choice = torch.full((32,), zero)
    assert torch.equal(table.rotate(torch.from_numpy(images), choice), unit_tensor(images))


def test_rotation_angles_are_uniform_within_the_limit():
    table = RandomRotation(7.0)
    assert table.angles.min() == -7.0 and table.angles.max() == 7.0
    assert len(table.angles) == 141
    gaps = table.angles.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, 0.1))


def test_rotation_agrees_with_torchvision_bilinear_rotate(mnist):
    from torchvision.transforms.functional import InterpolationMode, rotate

    images = mnist[1].images[:16]
    table = RandomRotation(7.0)
    for angle in (-7.0, 3.0, 6.5):
        choice = torch.full((16,), int((table.angles - angle).abs().argmin()))
        ours = table.rotate(torch.from_numpy(images), choice)
        theirs = rotate(unit_tensor(images), angle, InterpolationMode.BILINEAR, fill=0.0)
        # same direction and geometry; only edge handling of the interpolation differs
        assert (ours - theirs).abs().mean() < 0.01
