"""System benchmarks on Ray; each prints our rate beside its bare limit, measured in one run.

- collect: collectors + replay shards with the learner idle, against the bare
  `AtariVectorEnv` loop stepping the same number of envs on the same cores. Measured
  twice: in the eps = 1 warm-up (no network call) and while acting eps-greedily, where
  each env step also pays a Nature-CNN forward pass on the collector's CPU.
- learner: the learner actor fed through a replay shard (prefetching, priorities sent
  back), against a bare loop of `DQNLearner.update` on one fixed synthetic batch, same
  network, batch, device and torch threads; then the replay path's own limit, batches/s
  sampled, shipped and staged with no update taking them.
- system: the whole trainer at the Nature cadence (one batch of 32 per 4 env steps,
  held by the rate limiter) against 4 x the bare update loop's updates/s.
- overhead: learner and collect on the cartpole preset, whose MLP and env cost little,
  so their ratios measure the plumbing: the replay path per update, the collectors per
  env step.
- update (no Ray): `DQNLearner.update` against the same update in the plain NCHW layout
  with per-tensor Adam (what the learner ran before channels-last convolutions and
  fused Adam), alternating, in updates/s and in CPU milliseconds per update; CPU time
  is what a shared machine's steal and neighbours disturb least.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import ray
import torch

from learner.bench.timing import calls_per_s, paired_timings
from dqn.config import Config, load_config
from dqn.envs import make_vector_env
from dqn.learning import DQNLearner, make_learner, resolve_device
from dqn.process import torch_process
from dqn.replay import Batch
from learner.cluster import init_ray
from learner.driver import DistributedTrainer


def _config(preset: str, overrides: list[str], name: str, *fixed: str) -> Config:
    """The preset with the user's overrides, then the benchmark's own settings, writing
    to a fresh temporary run folder (so no earlier run is resumed)."""
    return load_config(preset, [*overrides, f"run.name={name}",
                                f"run.out_dir={tempfile.mkdtemp(prefix='raydqn-bench-')}",
                                "run.log_every_env_steps=1000000000",
                                "run.checkpoint_every_env_steps=1000000000",
                                "run.checkpoint_replay=false", *fixed])


def _bare_env_rate(cfg: Config, num_envs: int, seconds: float) -> float:
    env = make_vector_env(cfg.env, num_envs=num_envs, num_threads=os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(10):
        env.step(rng.integers(0, env.num_actions, num_envs))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(rng.integers(0, env.num_actions, num_envs))
        steps += num_envs
    env.close()
    return steps / (time.perf_counter() - start)


def _trainer_rate(trainer: DistributedTrainer, seconds: float,
                  warmup_s: float) -> tuple[float, float]:
    """(env steps/s, updates/s) of a running trainer after a warm-up, which lasts at
    least until the collectors have sent their first chunks (their start-up is not
    what is measured)."""
    end, deadline = time.perf_counter() + warmup_s, time.perf_counter() + 120
    while ((time.perf_counter() < end or trainer.env_steps == 0)
           and time.perf_counter() < deadline):
        trainer.step()
    steps0, updates0, start = trainer.env_steps, trainer.updates, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer.step()
    elapsed = time.perf_counter() - start
    return (trainer.env_steps - steps0) / elapsed, (trainer.updates - updates0) / elapsed


def bench_collect(preset: str, overrides: list[str], seconds: float) -> dict:
    report = {}
    # One collector per core unless told otherwise: the bare loop uses every core too.
    overrides = [f"ray.num_collectors={os.cpu_count() or 1}", *overrides]
    for phase, eps in (("warmup_eps1", "1.0"), ("acting", "0.1")):
        cfg = _config(preset, overrides, "bench-collect", "ray.rate_limit=false",
                      "explore.schedule=linear", f"explore.eps_start={eps}",
                      f"explore.eps_end={eps}", "replay.learning_starts_env_steps=1000000000")
        envs = cfg.ray.num_collectors * cfg.env.num_envs
        bare = _bare_env_rate(cfg, envs, seconds)
        init_ray(cfg)
        trainer = DistributedTrainer(cfg, progress=False)
        ours, _ = _trainer_rate(trainer, seconds, warmup_s=min(3.0, seconds))
        trainer.close()
        ray.shutdown()
        report.update({f"{phase}_env_steps_per_s": round(ours),
                       f"{phase}_bare_env_steps_per_s": round(bare),
                       f"{phase}_ratio": round(ours / bare, 3)})
    report.update({"game": cfg.env.id, "collectors": cfg.ray.num_collectors,
                   "envs_per_collector": cfg.env.num_envs})
    return report


def _bare_learner(cfg: Config, obs_shape: tuple[int, ...], num_actions: int):
    """A DQNLearner and one fixed synthetic batch on the learner's device and threads."""
    torch_process(cfg.ray.learner_threads)   # as the learner actor
    device = resolve_device(cfg.run.device)
    learner = make_learner(cfg, obs_shape, num_actions, device)
    batch = synthetic_batch(cfg.agent.batch_size, obs_shape, num_actions)
    return learner, Batch(*(torch.as_tensor(x).to(device) for x in batch))


def synthetic_batch(size: int, obs_shape: tuple[int, ...], num_actions: int,
                    seed: int = 0) -> Batch:
    """Random uint8 frames, actions and n-step returns shaped like a replay sample."""
    rng = np.random.default_rng(seed)
    return Batch(obs=rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
                 action=rng.integers(0, num_actions, size),
                 reward=rng.normal(size=size).astype(np.float32),
                 discount=np.full(size, 0.97, np.float32),
                 next_obs=rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
                 weight=np.ones(size, np.float32), index=np.arange(size))


def _bare_update_rate(cfg: Config, obs_shape: tuple[int, ...], num_actions: int,
                      seconds: float) -> float:
    learner, batch = _bare_learner(cfg, obs_shape, num_actions)
    return calls_per_s(lambda: learner.update(batch), seconds)


def plain_learner(learner: DQNLearner) -> DQNLearner:
    """`learner` turned into the baseline: NCHW tensors everywhere, Adam per tensor."""
    for net in (learner.online, learner.target):
        net.to(memory_format=torch.contiguous_format)
        net.frames = False  # the network then leaves its inputs' layout alone
    learner.optimizer = torch.optim.Adam(learner.online.parameters(), lr=learner.cfg.learning_rate,
                                         eps=learner.cfg.adam_eps, fused=False)
    return learner


def bench_update(preset: str, overrides: list[str], seconds: float) -> dict:
    cfg = _config(preset, overrides, "bench-update")
    obs_shape, num_actions = _probe(cfg)
    ours, batch = _bare_learner(cfg, obs_shape, num_actions)
    plain = plain_learner(_bare_learner(cfg, obs_shape, num_actions)[0])
    (rate, cpu), (plain_rate, plain_cpu) = paired_timings(
        lambda: ours.update(batch), lambda: plain.update(batch), seconds, rounds=8)
    return {"network": cfg.network.torso if len(obs_shape) == 3 else "mlp",
            "batch_size": cfg.agent.batch_size, "device": str(ours.device),
            "torch_threads": torch.get_num_threads(),
            "updates_per_s": round(rate, 2), "plain_updates_per_s": round(plain_rate, 2),
            "speedup": round(rate / plain_rate, 3),
            "cpu_ms_per_update": round(cpu, 2), "plain_cpu_ms_per_update": round(plain_cpu, 2),
            "cpu_ratio": round(cpu / plain_cpu, 3)}


def _probe(cfg: Config) -> tuple[tuple[int, ...], int]:
    env = make_vector_env(cfg.env, num_envs=1)
    shape, actions = env.obs_shape, env.num_actions
    env.close()
    return shape, actions


def bench_learner(preset: str, overrides: list[str], seconds: float) -> dict:
    """Fill replay with collectors, then pause them and time the learner alone."""
    cfg = _config(preset, overrides, "bench-learner", "ray.rate_limit=false")
    obs_shape, num_actions = _probe(cfg)
    bare_learner, bare_batch = _bare_learner(cfg, obs_shape, num_actions)
    init_ray(cfg)
    trainer = DistributedTrainer(cfg, progress=False)
    # Every shard past its own minimum fill before the collectors stop: a shard below it
    # would answer each request after its timeout, with no batch.
    while not all(s.ready for s in trainer.replay_stats()):
        trainer.step()
    for collector in trainer.collectors:      # learner alone from here on
        ray.kill(collector, no_restart=True)
    trainer.pending = {ref: owner for ref, owner in trainer.pending.items() if owner is None}
    trainer.collectors = []
    for ref in list(trainer.pending):
        ray.get(ref)
    trainer.pending.clear()
    # Alternate the two, so that the shared machine's noise hits both alike.
    rounds, ours, bare = 5, [], []
    for _ in range(rounds):
        bare.append(calls_per_s(lambda: bare_learner.update(bare_batch), seconds / rounds))
        ours.append(_learner_only_rate(trainer, seconds / rounds))
    ours, bare = float(np.median(ours)), float(np.median(bare))
    feed = ray.get(trainer.learner.__ray_call__.remote(_feed_rate, seconds / rounds))
    trainer.close()
    ray.shutdown()
    return {"game": cfg.env.id, "batch_size": cfg.agent.batch_size,
            "device": str(resolve_device(cfg.run.device)),
            "torch_threads": cfg.ray.learner_threads,
            "replay_shards": cfg.ray.num_replay_shards,
            "samples_in_flight": cfg.ray.samples_in_flight,
            "learner_updates_per_s": round(ours, 2), "bare_updates_per_s": round(bare, 2),
            "ratio": round(ours / bare, 3),
            # the replay path alone: batches/s sampled, shipped and staged, none trained on
            "feed_batches_per_s": round(feed, 2)}


def _feed_rate(learner, seconds: float) -> float:
    """Run inside the learner actor: batches/s its sampling thread delivers when they are
    taken without updating, the replay path's own limit (priorities left as they are)."""
    return calls_per_s(learner.batches.get, seconds)


def _learner_only_rate(trainer: DistributedTrainer, seconds: float) -> float:
    def train(n: int) -> int:
        return ray.get(trainer.learner.train.remote(n, 0.4)[0]).updates

    train(5)
    start_updates, start = train(1), time.perf_counter()
    updates = start_updates
    while time.perf_counter() - start < seconds:
        updates = train(50)
    return (updates - start_updates) / (time.perf_counter() - start)


def bench_system(preset: str, overrides: list[str], seconds: float) -> dict:
    cfg = _config(preset, overrides, "bench-system")
    obs_shape, num_actions = _probe(cfg)
    bare = _bare_update_rate(cfg, obs_shape, num_actions, seconds)
    init_ray(cfg)
    trainer = DistributedTrainer(cfg, progress=False)
    while trainer.updates == 0:
        trainer.step()
    steps_per_s, updates_per_s = _trainer_rate(trainer, seconds, warmup_s=min(5.0, seconds))
    wait = trainer.last_report.wait_fraction if trainer.last_report else None
    trainer.close()
    ray.shutdown()
    cadence = cfg.agent.update_every_env_steps
    return {"game": cfg.env.id, "batch_size": cfg.agent.batch_size,
            "env_steps_per_update": cadence, "env_steps_per_s": round(steps_per_s, 1),
            "learner_updates_per_s": round(updates_per_s, 2),
            "measured_env_steps_per_update": round(steps_per_s / max(updates_per_s, 1e-9), 2),
            "bare_updates_per_s": round(bare, 2),
            "limit_env_steps_per_s": round(cadence * bare, 1),
            "learner_wait_fraction_last_call": wait,
            "ratio": round(steps_per_s / (cadence * bare), 3)}


def bench_overhead(preset: str, overrides: list[str], seconds: float) -> dict:
    """The plumbing's own cost, measurable on any CPU: with a tiny network and env (the
    cartpole preset), updates and env steps cost little, so what `learner_ratio` and
    `collect_ratio` lose against their bare loops is the replay path's and the
    collectors' overhead per update and per env step."""
    learner = bench_learner(preset, overrides, seconds)
    collect = bench_collect(preset, overrides, seconds)
    return {"preset": preset, "learner_ratio": learner["ratio"],
            "collect_ratio": collect["acting_ratio"], "learner": learner,
            "collect": collect}

