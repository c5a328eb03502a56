"""RLlib's side of `raydqn bench rllib`: DQN on the new API stack, configured from our
config so that the two sides share every setting (see learner/bench/rllib.py).

The env is what RLlib's docs use for Atari on the new stack: `ALE/<Game>-v5` with
frameskip=1 under `wrap_atari_for_new_api_stack(dim=84, framestack=4)` (gray 84x84,
max-pooled skip 4, 30 no-ops, fire on reset, a 108K-frame limit), sticky actions from
the ALE, rewards clipped by RLlib (`clip_rewards=True`).
"""

from __future__ import annotations

import pickle
import time

import gymnasium as gym
import ray

from dqn.config import Config
from learner.bench.timing import Meter

ENV_NAME = "raydqn-rllib-atari"


def _make_env(env_config: dict) -> gym.Env:
    import ale_py
    from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack

    gym.register_envs(ale_py)
    game = "".join(part.capitalize() for part in env_config["game"].split("_"))
    env = gym.make(f"ALE/{game}-v5", frameskip=1,
                   repeat_action_probability=env_config["sticky_action_prob"])
    return wrap_atari_for_new_api_stack(env, dim=84, frameskip=env_config["frame_skip"],
                                        framestack=env_config["frame_stack"])


def build_algo(cfg: Config):
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    register_env(ENV_NAME, _make_env)
    runners = cfg.ray.num_collectors
    env_steps_per_update = cfg.agent.update_every_env_steps
    # RLlib alternates whole sample calls with whole numbers of updates, so the ratio is
    # exact only when one call's env steps are a multiple of env_steps_per_update.
    fragment = cfg.agent.n_step  # RLlib requires fragment >= n_step
    while (fragment * cfg.env.num_envs * runners) % env_steps_per_update:
        fragment += 1
    # Replayed transitions per sampled one, divided by the (runners + 1) that RLlib's
    # calculate_rr_weights counts (module docstring); checked by counting updates.
    intensity = cfg.agent.batch_size / env_steps_per_update / (runners + 1)
    config = (
        DQNConfig()
        .environment(ENV_NAME, clip_rewards=cfg.env.clip_rewards, env_config={
            "game": cfg.env.id, "sticky_action_prob": cfg.env.sticky_action_prob,
            "frame_skip": cfg.env.frame_skip, "frame_stack": cfg.env.frame_stack})
        .env_runners(num_env_runners=runners, num_envs_per_env_runner=cfg.env.num_envs,
                     rollout_fragment_length=fragment, num_cpus_per_env_runner=1)
        .learners(num_learners=0)
        .rl_module(model_config=DefaultModelConfig(
            conv_filters=[[32, 8, 4], [64, 4, 2], [64, 3, 1]], conv_activation="relu",
            head_fcnet_hiddens=[512], head_fcnet_activation="relu"))
        .training(
            lr=lr_schedule(cfg), gamma=cfg.agent.gamma, n_step=cfg.agent.n_step,
            train_batch_size_per_learner=cfg.agent.batch_size, double_q=cfg.agent.double_q,
            dueling=False, num_atoms=1, noisy=False, td_error_loss_fn="huber",
            adam_epsilon=cfg.agent.adam_eps, grad_clip=cfg.agent.grad_clip_norm or None,
            training_intensity=intensity,
            target_network_update_freq=(cfg.agent.target_update_period_updates
                                        * env_steps_per_update),
            num_steps_sampled_before_learning_starts=cfg.replay.learning_starts_env_steps,
            epsilon=[(0, cfg.explore.eps_start),
                     (cfg.explore.eps_decay_env_steps, cfg.explore.eps_end)],
            replay_buffer_config={"type": "EpisodeReplayBuffer",
                                  "capacity": cfg.replay.capacity_transitions})
        .reporting(min_sample_timesteps_per_iteration=0, min_time_s_per_iteration=0)
        .debugging(seed=cfg.run.seed)
    )
    return config.build_algo()


def run_rllib(cfg: Config, seconds: float) -> dict:
    ray.init(include_dashboard=False, log_to_driver=False)
    algo = build_algo(cfg)
    updates = 0
    update = algo.learner_group.update

    def counted_update(*args, **kwargs):  # one call = one gradient step on one batch
        nonlocal updates
        updates += 1
        return update(*args, **kwargs)

    algo.learner_group.update = counted_update
    meter = Meter(cfg.replay.learning_starts_env_steps)
    result: dict = {}
    while time.perf_counter() - meter.start < seconds:
        result = algo.train()
        meter.tick(_sampled(result), updates)
    report = meter.report(_sampled(result), updates)
    trained = result.get("learners", {}).get("__all_modules__", {})
    report["replay_bytes_per_transition"] = _bytes_per_transition(algo.local_replay_buffer)
    report["replay_transitions_at_end"] = algo.local_replay_buffer.get_num_timesteps()
    report["rllib_counters"] = {
        "num_env_steps_sampled_lifetime": _sampled(result),
        "num_env_steps_trained_lifetime": trained.get("num_env_steps_trained_lifetime"),
        "training_intensity_passed": cfg.agent.batch_size / cfg.agent.update_every_env_steps
        / (cfg.ray.num_collectors + 1)}
    algo.stop()
    return report


def _bytes_per_transition(buffer, episodes: int = 3) -> float | None:
    """Pickled size of the newest stored episodes per env step they hold (numpy arrays
    pickle to their raw bytes, so this is what the buffer keeps in memory)."""
    kept = list(buffer.episodes)[-episodes:]
    steps = sum(len(e) for e in kept)
    if not steps:
        return None
    return round(sum(len(pickle.dumps(e)) for e in kept) / steps, 1)


def _sampled(result: dict) -> int:
    return int(result.get("env_runners", {}).get("num_env_steps_sampled_lifetime", 0))


def lr_schedule(cfg: Config) -> float | list[list[float]]:
    """Our linear decay as RLlib's piecewise-linear [[env step, lr], ...] schedule. A switch
    keyed to an evaluation's return has no RLlib counterpart; the benchmark's budgets end
    long before one, so both sides keep learning_rate."""
    agent = cfg.agent
    if agent.lr_end is None or agent.lr_end_after_eval_return is not None:
        return agent.learning_rate
    points = [[0, agent.learning_rate], [agent.lr_decay_start_env_steps, agent.learning_rate],
              [agent.lr_decay_end_env_steps, agent.lr_end]]
    return points[1:] if agent.lr_decay_start_env_steps == 0 else points
