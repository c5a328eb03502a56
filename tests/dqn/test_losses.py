"""Targets and losses against hand-computed tables."""

import numpy as np
import pytest
import torch

from dqn.losses import huber, q_targets, td_loss

Q_NEXT_ONLINE = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 1.0]])
Q_NEXT_TARGET = torch.tensor([[4.0, 2.0, 3.0], [1.0, 6.0, 2.0]])


@pytest.mark.parametrize("double,expected", [
    # double: online picks a*=1 then 0 -> target values 2.0 and 1.0
    (True, [1.0 + 0.5 * 2.0, 2.0 + 0.25 * 1.0]),
    # plain: max of target net -> 4.0 and 6.0
    (False, [1.0 + 0.5 * 4.0, 2.0 + 0.25 * 6.0]),
])
def test_q_targets(double, expected):
    reward, discount = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.25])
    target = q_targets(reward, discount, Q_NEXT_ONLINE if double else None, Q_NEXT_TARGET)
    torch.testing.assert_close(target, torch.tensor(expected))


def test_terminal_discount_zero_ignores_next_state():
    target = q_targets(torch.tensor([3.0, -1.0]), torch.zeros(2), Q_NEXT_ONLINE, Q_NEXT_TARGET)
    torch.testing.assert_close(target, torch.tensor([3.0, -1.0]))


@pytest.mark.parametrize("x,delta,expected", [
    (0.0, 1.0, 0.0), (0.5, 1.0, 0.125), (-1.0, 1.0, 0.5), (3.0, 1.0, 2.5), (-3.0, 2.0, 4.0),
])
def test_huber(x, delta, expected):
    assert huber(torch.tensor(x), delta).item() == pytest.approx(expected)


def test_td_loss_weights_and_priorities():
    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]], requires_grad=True)
    out = td_loss(q, torch.tensor([1, 0]), torch.tensor([2.5, 3.0]), torch.tensor([1.0, 0.5]),
                  delta=1.0)
    # td = [0.5, 3.0]; huber = [0.125, 2.5]; weighted mean = (0.125 + 1.25) / 2
    assert out.loss.item() == pytest.approx(0.6875)
    torch.testing.assert_close(out.td_abs, torch.tensor([0.5, 3.0]))
    torch.testing.assert_close(out.q_taken, torch.tensor([2.0, 0.0]))
    out.loss.backward()
    # d/dq of w*huber/2: -(0.5)/2 for sample 0 action 1; -0.5 * 1 (clipped) / 2 for sample 1
    torch.testing.assert_close(q.grad, torch.tensor([[0.0, -0.25], [-0.25, 0.0]]))


@pytest.mark.parametrize("torso, layers, hidden, params", [
    # Nature: conv 4->32 8x8, 32->64 4x4, 64->64 3x3, 3136->512, 512->6
    ("nature", [(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512,
     (4 * 64 + 1) * 32 + (32 * 16 + 1) * 64 + (64 * 9 + 1) * 64 + 3137 * 512 + 513 * 6),
    # 2013: conv 4->16 8x8, 16->32 4x4, 2592->256, 256->6
    ("nips2013", [(16, 8, 4), (32, 4, 2)], 256,
     (4 * 64 + 1) * 16 + (16 * 16 + 1) * 32 + 2593 * 256 + 257 * 6),
])
def test_atari_torsos_are_the_papers_networks(torso, layers, hidden, params):
    from dqn.config import NetworkConfig
    from dqn.networks import QNetwork

    net = QNetwork((4, 84, 84), 6, NetworkConfig(torso=torso))
    convs = [m for m in net.torso if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == layers
    assert net.hidden[0].out_features == hidden
    assert sum(p.numel() for p in net.parameters()) == params
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert net(obs).shape == (3, 6)


@pytest.mark.parametrize("torso", ["nature", "nips2013"])
def test_channels_last_layout_changes_no_q_value_and_loads_plain_checkpoints(torso):
    import copy

    from dqn.config import NetworkConfig
    from dqn.networks import QNetwork

    torch.manual_seed(0)
    cfg = NetworkConfig(torso=torso, dueling=True)
    net = QNetwork((4, 84, 84), 6, cfg)
    assert net.torso[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not net.torso[0].weight.is_contiguous()
    plain = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    plain.frames = False  # its inputs stay NCHW too: every pass in the plain layout
    assert plain.torso[0].weight.is_contiguous()
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(net(obs), plain(obs), rtol=1e-5, atol=1e-5)
        # a checkpoint written before the change (plain tensors) loads unchanged
        loaded = QNetwork((4, 84, 84), 6, cfg)
        loaded.load_state_dict(plain.state_dict())
        assert loaded.torso[0].weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(loaded(obs), net(obs), rtol=0, atol=0)


def test_bfloat16_learner_matches_float32_and_learns():
    import dataclasses

    import numpy as np

    from dqn.config import Config, NetworkConfig
    from dqn.learning import DQNLearner
    from learner.bench.system import synthetic_batch

    batch = synthetic_batch(32, (4, 84, 84), 6)
    base = dataclasses.replace(Config(), network=NetworkConfig(torso="nips2013"))
    learners = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        cfg = dataclasses.replace(base, agent=dataclasses.replace(
            base.agent, precision=precision, learning_rate=1e-3))
        learners[precision] = DQNLearner(cfg, (4, 84, 84), 6, torch.device("cpu"))
    first = {name: learner.update(batch) for name, learner in learners.items()}
    # the same weights and batch: bf16 passes give nearly, but not exactly, the float32 loss
    assert first["bfloat16"].td_loss != first["float32"].td_loss
    assert first["bfloat16"].td_loss == pytest.approx(first["float32"].td_loss, rel=0.05)
    assert first["bfloat16"].td_abs.dtype == np.float32
    for _ in range(30):
        last = learners["bfloat16"].update(batch)
    assert last.td_loss < 0.5 * first["bfloat16"].td_loss
    assert next(learners["bfloat16"].online.parameters()).dtype == torch.float32


def test_batches_staged_by_the_prefetch_thread_train_exactly_as_raw_ones():
    import dataclasses

    from dqn.config import Config, NetworkConfig
    from dqn.learning import DQNLearner, TargetValues
    from learner.bench.system import synthetic_batch
    from learner.learner_actor import staged

    batch = synthetic_batch(32, (4, 84, 84), 6)
    base = dataclasses.replace(Config(), network=NetworkConfig(torso="nips2013"))
    cfg = dataclasses.replace(base, agent=dataclasses.replace(  # a target sync every 2nd update
        base.agent, target_update_period_updates=2, learning_rate=1e-3))
    learners = []
    for _ in range(2):
        torch.manual_seed(0)
        learners.append(DQNLearner(cfg, (4, 84, 84), 6, torch.device("cpu")))
    raw, ahead = learners
    ready = staged(batch, torch.device("cpu"), False, ahead.online.prepare)
    # the frames arrive as the network's input: floats in [0, 1], stacks channels-last
    assert ready.obs.dtype == ready.next_obs.dtype == torch.float32
    assert ready.obs.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ready.next_obs * 255, torch.as_tensor(batch.next_obs).float())
    torch.testing.assert_close(ready.reward, torch.as_tensor(batch.reward))

    def same_step(values: TargetValues) -> None:
        a, b = raw.update(batch), ahead.update(ready, values)
        assert a.td_loss == b.td_loss
        np.testing.assert_array_equal(a.td_abs, b.td_abs)

    same_step(ahead.target_values(ready.next_obs))   # computed ahead: the same step
    stale = ahead.target_values(ready.next_obs)
    same_step(ahead.target_values(ready.next_obs))   # update 2 syncs the target
    assert ahead.target_version == 1 and stale.version == 0
    same_step(stale)                                 # stale: computed again, not used
    for p, q in zip(raw.online.parameters(), ahead.online.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # and a current value is what the step uses
    forged = TargetValues(ahead.target_version, torch.zeros(32, 6))
    assert ahead.update(ready, forged).td_loss != raw.update(batch).td_loss


def test_learning_rate_decays_linearly_over_the_learners_env_steps():
    import dataclasses

    from dqn.config import load_config
    from dqn.errors import UserError
    from dqn.learning import DQNLearner
    from learner.bench.system import synthetic_batch

    # learning from 1,000 env steps, 4 per update: update u runs at env step 1,000 + 4u
    cfg = load_config("cartpole", ["replay.learning_starts_env_steps=1000",
                                   "agent.update_every_env_steps=4",
                                   "agent.learning_rate=0.001", "agent.lr_end=0.0002",
                                   "agent.lr_decay_start_env_steps=1008",
                                   "agent.lr_decay_end_env_steps=1016"])
    learner = DQNLearner(cfg, (4,), 2, torch.device("cpu"))
    batch = synthetic_batch(8, (4,), 2)
    seen = []
    for _ in range(6):
        seen.append(learner.learning_rate())
        learner.update(batch)
        assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(seen[-1])
    assert seen == pytest.approx([1e-3, 1e-3, 1e-3, 6e-4, 2e-4, 2e-4])
    constant = DQNLearner(dataclasses.replace(cfg, agent=dataclasses.replace(
        cfg.agent, lr_end=None)), (4,), 2, torch.device("cpu"))
    for _ in range(3):
        constant.update(batch)
    assert constant.optimizer.param_groups[0]["lr"] == 1e-3 == constant.learning_rate()
    with pytest.raises(UserError, match="lr_decay_end_env_steps = 1008 must exceed"):
        load_config("cartpole", ["agent.lr_end=0.0002", "agent.lr_decay_start_env_steps=1008",
                                 "agent.lr_decay_end_env_steps=1008"])


def test_an_evaluation_past_the_threshold_switches_the_step_to_lr_end_for_good():
    from dqn.config import load_config
    from dqn.errors import UserError
    from dqn.learning import DQNLearner
    from learner.bench.system import synthetic_batch

    cfg = load_config("cartpole", ["agent.learning_rate=0.001", "agent.lr_end=0.0002",
                                   "agent.lr_end_after_eval_return=5"])
    learner = DQNLearner(cfg, (4,), 2, torch.device("cpu"))
    batch = synthetic_batch(8, (4,), 2)
    learner.update(batch)
    learner.on_evaluation(4.9)                      # below the threshold: no switch
    learner.update(batch)
    assert learner.optimizer.param_groups[0]["lr"] == 1e-3 == learner.learning_rate()
    learner.on_evaluation(5.0)
    learner.update(batch)
    assert learner.optimizer.param_groups[0]["lr"] == 2e-4 == learner.learning_rate()
    learner.on_evaluation(-100.0)                   # a later, worse evaluation keeps lr_end
    assert learner.learning_rate() == 2e-4
    resumed = DQNLearner(cfg, (4,), 2, torch.device("cpu"))
    assert resumed.learning_rate() == 1e-3
    resumed.load_state_dict(learner.state_dict())   # the checkpoint keeps the switch
    assert resumed.learning_rate() == 2e-4
    with pytest.raises(UserError, match="lr_end_after_eval_return = 5.0 needs agent.lr_end"):
        load_config("cartpole", ["agent.lr_end_after_eval_return=5"])
    with pytest.raises(UserError, match="replaces the env-step decay"):
        load_config("cartpole", ["agent.lr_end=0.0002", "agent.lr_end_after_eval_return=5",
                                 "agent.lr_decay_start_env_steps=0",
                                 "agent.lr_decay_end_env_steps=1000"])
