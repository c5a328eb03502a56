"""The distributed trainer's actors, started once per run: replay shards, the learner and
the collectors, placed by the config's `ray` section.

Collector i writes to shard i mod shards; each shard holds one env stream per env of
the collectors that write to it, and its rate limiter holds the replay ratio for its
share of the inserts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import ray

from actors.collector import Collector
from actors.replay_shard import ReplayShard
from dqn.config import Config
from dqn.errors import UserError
from dqn.rate_limiter import RateLimiter
from dqn.schedules import apex_epsilons
from learner.learner_actor import LearnerActor


def check_resources(cfg: Config) -> None:
    """One clear line when the actors ask for more CPUs than the cluster has."""
    r = cfg.ray
    wanted = r.learner_cpus + r.num_collectors * r.collector_cpus + \
        r.num_replay_shards * r.replay_cpus
    have = ray.cluster_resources().get("CPU", 0)
    if wanted > have:
        raise UserError(f"the actors ask for {wanted:g} CPUs (ray.learner_cpus + "
                        f"ray.num_collectors x ray.collector_cpus + shards x "
                        f"ray.replay_cpus) but the cluster has {have:g}")


def collectors_of(cfg: Config, shard: int) -> list[int]:
    return list(range(shard, cfg.ray.num_collectors, cfg.ray.num_replay_shards))


def shard_stores(cfg: Config, obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> list[dict]:
    """The FrameReplay arguments of each shard."""
    r = cfg.ray
    stores = []
    for s in range(r.num_replay_shards):
        writers = len(collectors_of(cfg, s))
        streams = max(writers, 1) * cfg.env.num_envs
        capacity = cfg.replay.capacity_transitions // r.num_replay_shards
        if capacity // streams < 2 * (r.chunk_env_steps + cfg.env.frame_stack + cfg.agent.n_step):
            raise UserError(f"config replay.capacity_transitions = "
                            f"{cfg.replay.capacity_transitions} leaves "
                            f"{capacity // streams} records per env stream; each needs "
                            f"at least 2 x (ray.chunk_env_steps + stack + n_step)")
        stores.append(dict(capacity=capacity, num_streams=streams, frame_shape=obs_shape[1:],
                           frame_dtype=obs_dtype, stack=obs_shape[0], n_step=cfg.agent.n_step,
                           gamma=cfg.agent.gamma, prioritized=cfg.replay.prioritized,
                           alpha=cfg.replay.priority_exponent, seed=cfg.run.seed + 7919 * s))
    return stores


def shard_folders(cfg: Config, replay_dir: Path | None) -> list[Path | None]:
    """Where each shard saves and restores its replay (None: it does not)."""
    return [replay_dir / f"shard-{s}" if replay_dir else None
            for s in range(cfg.ray.num_replay_shards)]


def start_shards(cfg: Config, names: list[str], obs_shape: tuple[int, ...],
                 obs_dtype: np.dtype, replay_dir: Path | None = None) -> list:
    """One named ReplayShard actor per name (collectors look them up by it). Ray restarts
    a shard that dies, which then restores the replay of the last save in `replay_dir`,
    and retries the calls made to it meanwhile: its callers wait for it."""
    r = cfg.ray
    spi = cfg.agent.batch_size / cfg.agent.update_every_env_steps
    shards = []
    stores = shard_stores(cfg, obs_shape, obs_dtype)
    for s, (name, folder) in enumerate(zip(names, shard_folders(cfg, replay_dir))):
        writers = len(collectors_of(cfg, s))
        chunk = r.chunk_env_steps * cfg.env.num_envs
        limiter = RateLimiter(
            samples_per_insert=spi,
            min_inserts=math.ceil(cfg.replay.learning_starts_env_steps / r.num_replay_shards),
            error_buffer=max(writers * chunk * spi, 2 * cfg.agent.batch_size * r.prefetch_batches),
            enabled=r.rate_limit)
        shards.append(ReplayShard.options(
            name=name, num_cpus=r.replay_cpus, max_concurrency=4 + 2 * writers,
            max_restarts=-1, max_task_retries=-1,
        ).remote(stores[s], limiter, folder=str(folder) if folder else None))
    return shards


def start_learner(cfg: Config, shard_names: list[str], obs_shape: tuple[int, ...],
                  num_actions: int, checkpoint: Path):
    """The learner actor, on a GPU when the cluster has one (unless ray.learner_gpus says),
    started from `checkpoint` when it exists. Ray restarts it if it dies; it then starts
    from the checkpoint as it is by then."""
    gpus = cfg.ray.learner_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    resources = {cfg.ray.learner_resource: 1} if cfg.ray.learner_resource else None
    return LearnerActor.options(
        num_cpus=cfg.ray.learner_cpus, num_gpus=gpus, resources=resources, max_restarts=-1,
    ).remote(cfg, shard_names, obs_shape, num_actions, str(checkpoint))


def start_collector(cfg: Config, i: int, shard_names: list[str], env_steps: int):
    """Collector i: its env streams in its shard, its Ape-X epsilons, a seed that differs
    after a resume (`env_steps` done so far). Ray restarts it if it dies."""
    r, envs = cfg.ray, cfg.env.num_envs
    shard = i % r.num_replay_shards
    slot = collectors_of(cfg, shard).index(i)
    streams = np.arange(slot * envs, (slot + 1) * envs)
    epsilons = None
    if cfg.explore.schedule == "apex":
        epsilons = apex_epsilons(r.num_collectors * envs, cfg.explore.apex_base_eps,
                                 cfg.explore.apex_alpha)[i * envs:(i + 1) * envs]
    seed = cfg.run.seed + 1000 * i + env_steps
    return Collector.options(num_cpus=r.collector_cpus, max_restarts=-1,
                             scheduling_strategy="SPREAD").remote(
        cfg, i, shard_names[shard], streams, epsilons, seed)
