"""Learning tests: train for real and check the score.

CartPole-v1 from scratch with the single-process trainer must reach a mean greedy return
>= 475 over 10 episodes within 50,000 env steps. Training stops at the first in-training
evaluation that reaches 475 (DQN on CartPole is known to forget after solving it); the
final network is then judged on 10 fresh greedy episodes with seeds training never saw.
"""

import numpy as np
import pytest

from dqn.config import load_config
from dqn.evaluation import evaluate
from dqn.serial import train


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_is_solved_within_50k_env_steps(seed, run_dir):
    cfg = load_config("cartpole", [f"run.seed={seed}", f"run.out_dir={run_dir}"])
    result = train(cfg, progress=False)
    assert result.env_steps <= 50_000
    assert result.evaluations and result.evaluations[-1].mean_return >= 475
    episodes = evaluate(result.learner.online, cfg.env, 10, eps=0.0, seed=777_000 + seed)
    assert len(episodes) == 10
    assert np.mean([e.score for e in episodes]) >= 475


@pytest.mark.slow
def test_distributed_trainer_solves_cartpole_within_50k_env_steps(run_dir):
    """The same task through Ray: a collector, a replay shard, the learner actor and an
    evaluator actor that plays 10 greedy episodes on published weights."""
    import ray

    from learner.driver import train_distributed

    cfg = load_config("cartpole", ["run.seed=0", f"run.out_dir={run_dir}",
                                   "ray.num_collectors=1", "ray.chunk_env_steps=8",
                                   "ray.publish_every_updates=50"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = train_distributed(cfg, progress=False)
    finally:
        ray.shutdown()
    assert result.env_steps <= 50_000 + 32
    best = max(np.mean(e.returns) for e in result.evaluations)
    assert best >= 475
    assert all(len(e.returns) == 10 for e in result.evaluations)
