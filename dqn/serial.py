"""The single-process trainer: env, replay, learner and evaluation in one loop.

For tests, debugging and small tasks. The distributed trainer runs the same pieces
(StepRecorder, FrameReplay, DQNLearner, evaluate) in Ray actors.

    per vector step (num_envs env steps):
        act eps-greedily -> step envs -> record frames into replay
        after learning_starts: one update per update_every_env_steps env steps
        every eval_every_env_steps: evaluate greedily, checkpoint

Ctrl-C or SIGTERM stops after the current step and writes a final checkpoint; rerunning
with the same run name resumes networks, optimizer, counters and RNGs (replay refills).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from dqn.checkpoint import RESUME_HINT, SerialCheckpoint, best_weights, check_game, load_weights
from dqn.config import Config
from dqn.envs import make_vector_env
from dqn.evaluation import evaluate
from dqn.learning import DQNLearner, epsilon_greedy, make_learner, resolve_device
from dqn.metrics import MetricLogger
from dqn.networks import dormant_metrics
from dqn.recorder import StepRecorder
from dqn.replay import FrameReplay
from dqn.schedules import linear
from dqn.stopping import StopFlag




class Evaluation(NamedTuple):
    env_steps: int
    mean_return: float
    returns: list[float]


class TrainResult(NamedTuple):
    env_steps: int
    updates: int
    evaluations: list[Evaluation]
    checkpoint: Path
    learner: DQNLearner


def train(cfg: Config, *, progress: bool = True) -> TrainResult:
    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    ckpt_path = run_dir / "checkpoint.pt"
    torch.manual_seed(cfg.run.seed)
    rng = np.random.default_rng(cfg.run.seed)
    device = resolve_device(cfg.run.device)
    env = make_vector_env(cfg.env)
    learner = make_learner(cfg, env.obs_shape, env.num_actions, device)
    replay = FrameReplay(cfg.replay.capacity_transitions, env.num_envs, env.obs_shape[1:],
                         env.obs_dtype, stack=env.obs_shape[0], n_step=cfg.agent.n_step,
                         gamma=cfg.agent.gamma, prioritized=cfg.replay.prioritized,
                         alpha=cfg.replay.priority_exponent, seed=cfg.run.seed)
    env_steps, evaluations = 0, []
    if ckpt_path.exists():
        env_steps, evaluations = _resume(ckpt_path, cfg, learner, rng)
        print(f"resuming run {cfg.run.name!r} at {env_steps:,} env steps", file=sys.stderr)
    learning_starts = env_steps + cfg.replay.learning_starts_env_steps
    logger = MetricLogger(run_dir, cfg.to_dict(), name=cfg.run.name, group=cfg.env.id,
                          resume=env_steps > 0)
    recorder = StepRecorder(env.num_envs, cfg.env.clip_rewards, cfg.env.life_loss_terminal)
    obs, lives = env.reset(seed=cfg.run.seed + env_steps)
    recorder.start(obs, lives)
    stop = StopFlag()
    scores: deque[float] = deque(maxlen=20)
    credit, last_log, last_eval, result = 0.0, env_steps, env_steps, None
    started, steps_at_start = time.time(), env_steps
    bar = tqdm(total=cfg.run.total_env_steps, initial=env_steps, unit="step",
               disable=not progress, dynamic_ncols=True)

    def save() -> Path:
        return SerialCheckpoint(cfg.to_dict(), learner.state_dict(), env_steps,
                                [e._asdict() for e in evaluations], rng.bit_generator.state,
                                torch.get_rng_state()).save(ckpt_path)

    try:
        while env_steps < cfg.run.total_env_steps and not stop.requested:
            eps = linear(cfg.explore.eps_start, cfg.explore.eps_end,
                         cfg.explore.eps_decay_env_steps, env_steps)
            actions = epsilon_greedy(learner.online, obs, eps, rng, device)
            step = env.step(actions)
            records, episodes = recorder.record(actions, step)
            replay.add(records)
            obs = step.obs
            env_steps += env.num_envs
            bar.update(env.num_envs)
            scores.extend(e.score for e in episodes)
            if env_steps > learning_starts and len(replay) >= cfg.agent.batch_size:
                credit += env.num_envs / cfg.agent.update_every_env_steps
                beta = linear(cfg.replay.importance_exponent_start, 1.0,
                              cfg.run.total_env_steps, env_steps)
                while credit >= 1.0:
                    batch = replay.sample(cfg.agent.batch_size, beta)
                    result = learner.update(batch)
                    replay.update_priorities(batch.index, result.td_abs)
                    credit -= 1.0
            if env_steps - last_log >= cfg.run.log_every_env_steps:
                last_log = env_steps
                sps = (env_steps - steps_at_start) / max(time.time() - started, 1e-9)
                metrics = {"charts/SPS": sps, "charts/epsilon": eps, "replay/size": len(replay),
                           "learner/updates": learner.updates, "charts/env_steps": env_steps}
                if scores:
                    metrics["charts/episodic_return"] = float(np.mean(scores))
                if result is not None:
                    metrics.update({"losses/td_loss": result.td_loss,
                                    "losses/q_values": result.q_mean,
                                    "charts/learning_rate": learner.learning_rate()})
                    metrics.update(dormant_metrics(learner.dormant_units(batch.obs)))
                    if cfg.agent.recycle_dormant_every_updates:
                        metrics["learner/recycled_units"] = learner.recycled_units
                logger.log(env_steps * cfg.env.frames_per_env_step, metrics)
                bar.set_postfix(ret=f"{np.mean(scores):.1f}" if scores else "-",
                                sps=f"{sps:.0f}", upd=learner.updates)
            if env_steps - last_eval >= cfg.run.eval_every_env_steps:
                last_eval = env_steps
                evaluations.append(_evaluate(cfg, learner, device, env_steps, logger))
                learner.on_evaluation(evaluations[-1].mean_return)
                if evaluations[-1].mean_return >= max(e.mean_return for e in evaluations):
                    best_weights(cfg.to_dict(), learner.online.state_dict(), env_steps=env_steps,
                                 returns=evaluations[-1].returns).save(run_dir / "best.pt")
                save()
                target = cfg.run.stop_at_eval_return
                if target is not None and evaluations[-1].mean_return >= target:
                    break
    finally:
        bar.close()
        env.close()
        stop.restore()
        path = save()
        logger.close()
    return TrainResult(env_steps, learner.updates, evaluations, path, learner)


def _evaluate(cfg: Config, learner: DQNLearner, device: torch.device, env_steps: int,
              logger: MetricLogger) -> Evaluation:
    episodes = evaluate(learner.online, cfg.env, cfg.run.eval_episodes, cfg.explore.eval_eps,
                        seed=cfg.run.seed + 10_000 + env_steps, device=device)
    returns = [e.score for e in episodes]
    logger.log(env_steps * cfg.env.frames_per_env_step,
               {"eval/mean_return": float(np.mean(returns)),
                "eval/median_return": float(np.median(returns)),
                "eval/mean_length": float(np.mean([e.env_steps for e in episodes]))})
    tqdm.write(f"eval at {env_steps:,} env steps: mean return {np.mean(returns):.1f} over "
               f"{len(returns)} episodes", file=sys.stderr)
    return Evaluation(env_steps, float(np.mean(returns)), returns)


def _resume(path: Path, cfg: Config, learner: DQNLearner,
            rng: np.random.Generator) -> tuple[int, list[Evaluation]]:
    ckpt = SerialCheckpoint.load(path, "; resume a distributed run without --serial, or "
                                       "pick another run.name")
    check_game(ckpt, path, cfg.env.id, RESUME_HINT)
    load_weights(learner.online, ckpt.learner["online"], path, RESUME_HINT)
    learner.load_state_dict(ckpt.learner)
    rng.bit_generator.state = ckpt.rng
    torch.set_rng_state(ckpt.torch_rng)
    return int(ckpt.env_steps), [Evaluation(**e) for e in ckpt.evaluations]
