"""K models as one grouped network: each member is the model it would be alone (small data; on
the CPU, and on CUDA where a GPU is present)."""

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from regcli.core.config import TrainConfig
from regcli.core.errors import UsageError
from regcli.nn.grouped import FlatParameters, initial_state, pack, schedule_table, unpack
from regcli.nn.model import Net, regularized_parameters
from regcli.train.trainer import GroupTrainer, train_group
from tests.helpers import strip

CPU = torch.device("cpu")
BASE = TrainConfig(epochs=2, limit_train=640, limit_test=256)
MEMBERS = [
    replace(BASE, seed=1),
    replace(BASE, seed=2, l1=1e-3),
    replace(BASE, seed=3, weight_decay=1e-2, reg_scope="all", lr=0.05),
    replace(BASE, seed=4, l1=1e-3, weight_decay=1e-2, schedule="step"),
]


def nets(configs):
    out = []
    for config in configs:
        net = Net(config.dropout)
        net.load_state_dict(initial_state(config))
        out.append(net)
    return out


def test_pack_and_unpack_round_trip_to_ordinary_net_state_dicts():
    singles = [net.state_dict() for net in nets(MEMBERS)]
    grouped = Net(members=4)
    grouped.load_state_dict(pack(singles))  # shapes fit the grouped network exactly
    for single, back in zip(singles, unpack(grouped.state_dict(), 4), strict=True):
        assert single.keys() == back.keys()
        assert all(torch.equal(single[k], back[k]) for k in single)
        Net().load_state_dict(back)  # an ordinary Net takes it


def test_group_of_one_is_exactly_net():
    assert Net(members=1).state_dict().keys() == Net().state_dict().keys()
    pairs = zip(Net(members=1).named_parameters(), Net().named_parameters(), strict=True)
    for (name, a), (_, b) in pairs:
        assert a.shape == b.shape, name


def test_grouped_forward_equals_each_members_own_forward(mnist):
    members = nets(MEMBERS)
    grouped = Net(members=4)
    grouped.load_state_dict(pack([m.state_dict() for m in members]))
    images = torch.from_numpy(mnist[1].images[:32]).float().div(255).unsqueeze(1)
    with torch.no_grad():
        together = grouped.eval()(images.expand(-1, 4, -1, -1)).view(32, 4, 10)
        for k, net in enumerate(members):
            assert torch.allclose(together[:, k], net.eval()(images), atol=1e-5)


def textbook_step(config, net, images, labels, lr, momentum):
    """One step of `net` trained alone, the classic way: SGD with parameter groups and the L1
    penalty as a loss term."""
    scope = {id(p) for p in regularized_parameters(net, config.reg_scope)}
    groups = [
        {
            "params": [p for p in net.parameters() if id(p) in scope],
            "weight_decay": config.weight_decay,
        },
        {"params": [p for p in net.parameters() if id(p) not in scope], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=momentum)
    penalty = config.l1 * sum(p.abs().sum() for p in net.parameters() if id(p) in scope)
    (F.cross_entropy(net.train()(images), labels) + penalty).backward()
    optimizer.step()


ON_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TOLERANCE = {"cpu": 1e-5, "cuda": 2e-5}  # absolute, per weight: float32 sums in another order


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=ON_CUDA)])
def test_with_dropout_off_a_members_step_is_its_own_step_alone(mnist, device, monkeypatch):
    """With dropout and rotation off, one step of member k equals torch.optim.SGD on that Net
    alone (eagerly; on CUDA in float32 on both sides, not TF32)."""
    device = torch.device(device)
    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    configs = [replace(c, dropout=0.0, max_rotation=0.0) for c in MEMBERS]
    train, test = mnist
    trainer = GroupTrainer(configs, train, test, device, graphs=False)
    every = torch.arange(640, device=device)
    trainer.order.copy_(every.expand(4, -1))  # every member: the same first batch
    trainer.angles.zero_()
    trainer.epoch_step.zero_()
    trainer.net.train()
    trainer.step(128)
    grouped = trainer.member_states([[]] * 4, [None] * 4)
    images = torch.from_numpy(train.images[:128]).float().div(255).unsqueeze(1).to(device)
    labels = torch.from_numpy(train.labels[:128]).to(device)
    for config, member, net in zip(configs, grouped, nets(configs), strict=True):
        net.to(device)
        lr, momentum = schedule_table(config, trainer.steps_per_epoch)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        textbook_step(config, net, images, labels, lr[0], momentum[0])
        for key, value in net.state_dict().items():
            alone, together = value.float().cpu(), member.weights[key].float()
            assert torch.allclose(alone, together, atol=TOLERANCE[device.type]), key
            if key.endswith("weight") and "layers.1.0" in key:
                assert not torch.equal(value, before[key])  # the step did move the weights


def test_penalty_and_decay_touch_only_their_own_member():
    configs = [BASE, replace(BASE, l1=1e-3), replace(BASE, weight_decay=1e-2, reg_scope="all")]
    net = Net(members=3)
    params = FlatParameters(net, configs)
    owner = params.member_of
    assert params.l1[owner != 1].abs().sum() == 0 and (params.l1[owner == 1] >= 0).all()
    assert params.weight_decay[owner != 2].abs().sum() == 0
    # member 1's L1 covers its conv weights only (scope weights); member 2's decay everything
    conv_elements = sum(p.numel() for p in regularized_parameters(net, "weights")) // 3
    assert int((params.l1 > 0).sum()) == conv_elements
    assert int((params.weight_decay > 0).sum()) == params.per_member
    # the per-member penalty is l1 * sum(|w|) of that member's own conv weights
    w = params.vector.detach()
    penalty = params.member_sums(w.abs() * params.l1)
    single = Net()
    single.load_state_dict(unpack(net.state_dict(), 3)[1])
    expected = 1e-3 * sum(p.abs().sum() for p in regularized_parameters(single, "weights"))
    assert penalty[0] == 0 and penalty[2] == 0
    assert penalty[1].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_group_run_is_repeatable_and_its_members_learn(mnist):
    first, info = train_group(MEMBERS[:3], *mnist, CPU)
    again, _ = train_group(MEMBERS[:3], *mnist, CPU)
    assert strip(first) == strip(again) and info["group_size"] == 3
    assert all(
        torch.equal(a.weights[k], b.weights[k])
        for a, b in zip(first, again, strict=True)
        for k in a.weights
    )
    for state in first:
        assert (
            len(state.history) == 2 and state.history[-1].train_loss < state.history[0].train_loss
        )
    assert first[1].history[0].penalty > 0 and first[0].history[0].penalty == 0
    # a member's own seed decides its run: another seed for member 0 changes only member 0's
    # data order and initial weights (and the group's shared dropout stream)
    other, _ = train_group([replace(MEMBERS[0], seed=9), *MEMBERS[1:3]], *mnist, CPU)
    assert strip(other)[0] != strip(first)[0]


def test_a_diverging_member_stops_and_the_others_go_on(mnist):
    configs = [replace(MEMBERS[0], lr=1e5), MEMBERS[1]]
    states, _ = train_group(configs, *mnist, CPU)
    diverged = states[0].diverged
    assert diverged is not None and diverged["epoch"] == 1 and diverged["batch"] >= 1
    assert states[0].history == []
    assert states[1].diverged is None and len(states[1].history) == BASE.epochs
    alone, _ = train_group([MEMBERS[1]], *mnist, CPU)
    survivor, solo = states[1].history[-1], alone[0].history[-1]
    assert abs(survivor.train_loss - solo.train_loss) < 0.1 * solo.train_loss


def test_members_must_share_the_run_length_and_data():
    with pytest.raises(UsageError, match="share epochs"):
        GroupTrainer([BASE, replace(BASE, epochs=3)], None, None, CPU)


def test_a_group_that_does_not_fit_is_split_not_failed(tmp_path, monkeypatch):
    """Out of GPU memory before the first epoch: the group trains as two halves instead."""
    import regcli.jobs.group_run as group_run
    from regcli.jobs.runs import Request
    from tests.conftest import train_cpu

    real = group_run.train_group
    sizes = []

    def tight_memory(configs, *args, **kwargs):
        sizes.append(len(configs))
        if len(configs) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(group_run, "train_group", tight_memory)
    config = TrainConfig(epochs=1, limit_train=256, limit_test=128)
    requests = [Request(replace(config, seed=k), "g", seeded=True) for k in range(4)]
    outcomes = train_cpu(requests, tmp_path, group_size=4)
    assert sizes == [4, 2, 2] and [o.action for o in outcomes] == ["trained"] * 4
    groups = [
        json.loads((o.model_dir / "metrics.json").read_text())["run"]["group"] for o in outcomes
    ]
    assert [g["size"] for g in groups] == [2, 2, 2, 2]
    assert groups[0]["members"] == ["g/seed-0", "g/seed-1"]
