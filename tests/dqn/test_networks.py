"""Dormant units (Sokar et al. 2023): the measure the learner logs as learner/dormant_units."""

import torch

from dqn.config import NetworkConfig
from dqn.networks import QNetwork, dormant_fractions, dormant_metrics


def frames(n: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def test_killed_filters_and_neurons_are_counted_dormant_layer_by_layer():
    net = QNetwork((4, 84, 84), 6, NetworkConfig(torso="nips2013", dueling=True))
    with torch.no_grad():  # every unit of a layer alike and firing: none dormant
        for p in net.parameters():
            p.fill_(1e-3)
    obs = frames()
    fresh = dormant_fractions(net, obs)
    assert fresh == {"conv1": 0.0, "conv2": 0.0, "fc1": 0.0, "fc2": 0.0, "all": 0.0}
    assert list(fresh) == ["conv1", "conv2", "fc1", "fc2", "all"]  # fc2: the value stream
    with torch.no_grad():
        net.torso[0].bias[[1, 5, 9]] = -1e3         # three of 16 conv1 filters never fire
        net.hidden[0].bias[:64] = -1e3              # a quarter of the 256 hidden neurons
    killed = dormant_fractions(net, obs)
    assert killed["conv1"] == 3 / 16 and killed["conv2"] == 0.0
    assert killed["fc1"] == 64 / 256 and killed["fc2"] == 0.0
    units = 16 + 32 + 256 + 256
    assert abs(killed["all"] * units - sum(killed[k] * n for k, n in
               [("conv1", 16), ("conv2", 32), ("fc1", 256), ("fc2", 256)])) < 1e-9


def test_a_weak_but_live_unit_is_dormant_only_under_the_threshold():
    net = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.ReLU())
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([1.0, 1.0, 1.0, 0.01]))  # mean 0.7525: 0.01 is 1.3 %
    obs = torch.ones(8, 1)
    assert dormant_fractions(net, obs)["fc1"] == 0.25
    assert dormant_fractions(net, obs, tau=0.01)["fc1"] == 0.0
    with torch.no_grad():
        net[0].bias.fill_(-1.0)                   # a layer all dead is all dormant
    assert dormant_fractions(net, obs) == {"fc1": 1.0, "all": 1.0}


def test_metric_names_and_the_hooks_are_removed():
    torch.manual_seed(0)
    net = QNetwork((4, 84, 84), 6, NetworkConfig(torso="nips2013"))
    metrics = dormant_metrics(dormant_fractions(net, frames(4)))
    assert set(metrics) == {"learner/dormant_units", "learner/dormant_units_conv1",
                            "learner/dormant_units_conv2", "learner/dormant_units_fc1"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert all(not m._forward_hooks for m in net.modules())


def test_the_learner_initial_weights_follow_run_seed_and_leave_torch_rng_alone():
    from dqn.config import load_config
    from dqn.learning import DQNLearner

    def weights(seed: int) -> torch.Tensor:
        cfg = load_config("laptop", [f"run.seed={seed}"])
        return DQNLearner(cfg, (4, 84, 84), 6, torch.device("cpu")).online.torso[0].weight

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = weights(0)
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is untouched
    assert torch.equal(a, weights(0)) and not torch.equal(a, weights(1))


def test_zero_sum_first_layer_starts_with_no_dormant_filter_on_a_flat_background():
    # Pong-like frames: a flat grey field with two paddles and a ball
    obs = torch.full((8, 4, 84, 84), 87, dtype=torch.uint8)
    obs[:, :, 30:46, 8:10] = obs[:, :, 50:66, 74:76] = 147
    obs[:, :, 40:42, 40:42] = 236
    dead = {}
    for init in ("torch", "zero_sum"):
        torch.manual_seed(0)
        net = QNetwork((4, 84, 84), 6, NetworkConfig(torso="nips2013", conv1_init=init))
        dead[init] = dormant_fractions(net, obs)["conv1"]
        if init == "zero_sum":
            w = net.torso[0].weight
            assert w.sum(dim=(1, 2, 3)).abs().max() < 1e-5 and (net.torso[0].bias > 0).all()
    assert dead["torch"] > 0 and dead["zero_sum"] == 0.0
    torch.manual_seed(0)  # the option touches only conv1
    plain = QNetwork((4, 84, 84), 6, NetworkConfig(torso="nips2013"))
    assert torch.equal(plain.torso[2].weight, net.torso[2].weight)


def test_recycling_gives_dormant_units_fresh_inputs_and_zero_outputs_and_keeps_q():
    from dqn.networks import recycle_dormant

    net = QNetwork((4, 84, 84), 6, NetworkConfig(torso="nips2013", dueling=True,
                                                 conv1_init="zero_sum"))
    with torch.no_grad():  # every unit of a layer alike and firing: none dormant
        for p in net.parameters():
            p.fill_(1e-3)
        net.torso[0].bias[[1, 5, 9]] = -1e3         # three conv1 filters never fire
        net.torso[2].bias[3] = -1e3                 # one conv2 channel: 9 x 9 inputs of fc
        net.hidden[0].bias[:64] = -1e3              # a quarter of the advantage stream
    obs = frames()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-5)
    net(obs).sum().backward()
    optimizer.step()                                # Adam's moments now exist
    before = net(obs)
    assert recycle_dormant(net, obs, optimizer) == 3 + 1 + 64
    assert torch.allclose(net(obs), before, atol=1e-6)   # outgoing weights are zero
    conv1, conv2 = net.torso[0], net.torso[2]
    assert (conv1.weight[[1, 5, 9]] != conv1.weight[0]).any(dim=(1, 2, 3)).all()
    assert conv1.weight[[1, 5, 9]].sum(dim=(1, 2, 3)).abs().max() < 1e-5  # zero-sum again
    assert (conv1.bias[[1, 5, 9]] > 0).all() and (conv1.bias[[0, 2]] != 0).all()
    live = [c for c in range(32) if c != 3]         # conv2's channel 3 got fresh inputs
    assert (conv2.weight[live][:, [1, 5, 9]] == 0).all() and (conv2.weight[:, 0] != 0).all()
    assert (conv2.weight[3] != 1e-3).all()
    # channel 3 of conv2 feeds both streams (rows 0-63 of the first got fresh inputs)
    for rows in (net.hidden[0].weight[64:], net.value_hidden[0].weight):
        assert (rows[:, 3 * 81:4 * 81] == 0).all() and (rows[:, :81] != 0).all()
    assert (net.out.weight[:, :64] == 0).all() and (net.value_out.weight != 0).all()
    moments = optimizer.state[conv1.weight]["exp_avg"]
    assert (moments[[1, 5, 9]] == 0).all() and (moments[0] != 0).any()
    assert (optimizer.state[net.out.weight]["exp_avg_sq"][:, :64] == 0).all()
    assert dormant_fractions(net, obs)["conv1"] == 0.0   # the fresh filters fire


def test_the_learner_recycles_on_its_schedule_and_the_checkpoint_keeps_the_count():
    from dqn.config import load_config
    from dqn.learning import RecyclingDQNLearner, make_learner
    from learner.bench.system import synthetic_batch

    cfg = load_config("cartpole", ["agent.recycle_dormant_every_updates=3"])
    learner = make_learner(cfg, (4,), 2, torch.device("cpu"))
    assert isinstance(learner, RecyclingDQNLearner)
    with torch.no_grad():
        learner.online.torso[1].bias[:10] = -1e3    # ten neurons of the first layer dead
    batch = synthetic_batch(64, (4,), 2)
    learner.update(batch)
    learner.update(batch)
    assert learner.recycled_units == 0              # not yet: every 3 updates
    learner.update(batch)
    assert learner.recycled_units >= 10
    again = make_learner(cfg, (4,), 2, torch.device("cpu"))
    again.load_state_dict(learner.state_dict())
    assert again.recycled_units == learner.recycled_units
