"""The distributed trainer's driver: starts the actors, feeds them work, watches them.

    collectors ──chunks of frames──► replay shards ──batches──► learner
        ▲                                                          │
        └──────────── newest weights (one object ref, versioned) ◄─┘

The driver keeps one `collect` call in flight per collector and one `train` call on
the learner, and reacts to whichever finishes first: counting env steps and episodes,
handing the newest weights to collectors that lack them, logging, checkpointing.

Any actor may die; Ray restarts it (max_restarts=-1) and the run goes on. A collector's
death is noticed and counted, and the weights are resent before the new one acts; the
learner never stops for it. A replay shard restores its last replay save and its callers
wait for it (startup.start_shards). A learner restarts from the last checkpoint (the
updates since are lost), the collectors collecting meanwhile. Weight versions are the
driver's own, counted up whenever a learner hands new weights back, so they never go
back when a restarted learner starts counting again; the weights are objects the driver
owns, so they outlive the learner that made them.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import NamedTuple

import numpy as np
import ray
from tqdm import tqdm

from actors.collector import CollectReport
from actors.evaluator import EvalReport, Evaluator
from actors.replay_shard import ShardStats
from dqn.checkpoint import (RESUME_HINT, DistributedCheckpoint, best_return, best_weights,
                            check_game, load_weights)
from dqn.config import Config
from dqn.envs import make_vector_env
from dqn.metrics import MetricLogger
from dqn.networks import QNetwork, dormant_metrics
from dqn.replay import FrameReplay
from dqn.replay_files import ReplayFiles
from dqn.schedules import linear
from dqn.stopping import StopFlag
from learner.cluster import init_ray
from learner.learner_actor import LearnerReport
from learner.startup import (check_resources, shard_folders, shard_stores, start_collector,
                             start_learner, start_shards)


class DistributedResult(NamedTuple):
    env_steps: int
    updates: int
    weights_version: int
    collector_restarts: int
    checkpoint: Path
    evaluations: list[EvalReport]


EVAL = "eval"  # the owner tag of the evaluator's call in `pending`
REPLAY_SAVE_WAIT_S = 300.0  # for the last replay save at the end of a run
LEARNER_RESTART_WAIT_S = 120.0  # for Ray to bring a learner back
COUNTED = 0  # as an actor's last pid: its restart is counted already


class DistributedTrainer:
    def __init__(self, cfg: Config, *, progress: bool = True):
        self.cfg = cfg
        self.run_dir = Path(cfg.run.out_dir) / cfg.run.name
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        self.best_path = self.run_dir / "best.pt"
        self.replay_dir = self.run_dir / "replay" if cfg.run.checkpoint_replay else None
        state = self._load_state()           # bad checkpoints fail before Ray starts
        self.best_return = best_return(self.best_path) if state else -math.inf
        self.owns_ray = init_ray(cfg)
        check_resources(cfg)
        probe = make_vector_env(cfg.env, num_envs=1)
        obs_shape, num_actions, obs_dtype = probe.obs_shape, probe.num_actions, probe.obs_dtype
        probe.close()
        if state:
            self._check_network(state, obs_shape, num_actions)
        self._check_replay(state is not None, obs_shape, obs_dtype)
        self.env_steps = state.env_steps if state else 0
        self.saved_env_steps = self.env_steps if state else None  # on disk
        self.restarts = state.collector_restarts if state else 0
        shard_names = [f"raydqn-shard-{uuid.uuid4().hex[:8]}-{s}"
                       for s in range(cfg.ray.num_replay_shards)]
        self.shards = start_shards(cfg, shard_names, obs_shape, obs_dtype, self.replay_dir)
        self.shard_pids: list[int | None] = [None] * len(self.shards)
        self.replay_restarts = state.replay_restarts if state else 0
        self.learner = start_learner(cfg, shard_names, obs_shape, num_actions, self.ckpt_path)
        self.learner_restarts = state.learner_restarts if state else 0
        self._updates_at_death: int | None = None  # until a restarted learner reports
        self.collectors = [start_collector(cfg, i, shard_names, self.env_steps)
                           for i in range(cfg.ray.num_collectors)]
        self.evaluator = Evaluator.options(num_cpus=0, max_restarts=-1).remote(
            cfg, obs_shape, num_actions, cfg.ray.evaluator_nice)
        self.evaluator_restarts = state.evaluator_restarts if state else 0
        self._evaluator_pid: int | None = None
        self.evaluations: list[EvalReport] = []
        self._eval_weights: ray.ObjectRef | None = None    # the weights being evaluated
        self.target_reached = False
        self.collector_version = [-1] * cfg.ray.num_collectors
        self.retry_at: dict[int, float] = {}    # dead collectors, relaunched after a pause
        self.down: set[int] = set()
        version, self.weights = self.learner.latest_weights.remote()
        ray.get(version)                      # the learner is up: the run starts from here
        self.weights_version = 1
        self.updates = int(state.learner["updates"]) if state else 0
        # owner of each call in flight: a collector's index, None (learner) or EVAL
        self.pending: dict[ray.ObjectRef, int | str | None] = {}
        self._weights_of: dict[ray.ObjectRef, ray.ObjectRef] = {}  # a train call's weights
        self.scores: deque[float] = deque(maxlen=50)
        self.lengths: deque[int] = deque(maxlen=50)
        self.episodes = state.episodes if state else 0
        self.last_report: LearnerReport | None = None
        self.logger = MetricLogger(self.run_dir, cfg.to_dict(), name=cfg.run.name,
                                   group=cfg.env.id, resume=state is not None)
        self.bar = tqdm(total=cfg.run.total_env_steps, initial=self.env_steps, unit="step",
                        disable=not progress, dynamic_ncols=True)
        self._rates = _Rates(self.env_steps, self.updates)
        self._last_log = self._last_ckpt = self._last_eval = self.env_steps
        if state:
            restored = sum(s.restored for s in self.replay_stats())
            _say(f"resuming run {cfg.run.name!r} at {self.env_steps:,} env steps, "
                 f"{self.updates:,} learner updates, {restored:,} replay records restored")
            self.logger.log(self._frames(), {"replay/restored": restored})

    # -- set-up ------------------------------------------------------------------------

    def _load_state(self) -> DistributedCheckpoint | None:
        if not self.ckpt_path.exists():
            return None
        state = DistributedCheckpoint.load(self.ckpt_path, "; resume it with --serial, or "
                                                           "pick another run.name")
        check_game(state, self.ckpt_path, self.cfg.env.id, RESUME_HINT)
        return state

    def _check_replay(self, resumed: bool, obs_shape: tuple[int, ...],
                      obs_dtype: np.dtype) -> None:
        """A resumed run restores its shards' saved replay, which must fit this config;
        a fresh run starts from none (a replay folder left without a checkpoint goes)."""
        if self.replay_dir is None:
            return
        if not resumed:
            shutil.rmtree(self.replay_dir, ignore_errors=True)
            return
        for kwargs, folder in zip(shard_stores(self.cfg, obs_shape, obs_dtype),
                                  shard_folders(self.cfg, self.replay_dir)):
            ReplayFiles(folder).check(FrameReplay(**kwargs))

    def _check_network(self, state: DistributedCheckpoint, obs_shape: tuple[int, ...],
                       num_actions: int) -> None:
        load_weights(QNetwork(obs_shape, num_actions, self.cfg.network),
                     state.learner["online"], self.ckpt_path, RESUME_HINT)

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> DistributedResult:
        stop = StopFlag()
        try:
            while (self.env_steps < self.cfg.run.total_env_steps and not stop.requested
                   and not self.target_reached):
                self.step()
        finally:
            stop.restore()
            self.close()
        return DistributedResult(self.env_steps, self.updates, self.weights_version,
                                 self.restarts, self.ckpt_path, self.evaluations)

    def step(self, timeout_s: float = 1.0) -> None:
        """Wait for the next finished call, handle it and put its actor back to work."""
        if not self.pending:
            self._launch_learner()
            for i in range(len(self.collectors)):
                self._launch_collector(i)
        for i, when in list(self.retry_at.items()):
            if time.monotonic() >= when:
                del self.retry_at[i]
                self._launch_collector(i)
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout_s)
        for ref in ready:
            owner = self.pending.pop(ref)
            if owner is None:
                self._on_learner(ref)
                self._launch_learner()
            elif owner == EVAL:
                self._on_evaluator(ref)
            elif self._on_collector(owner, ref):
                self._launch_collector(owner)
            else:
                self.retry_at[owner] = time.monotonic() + 0.5
        self._maybe_log()
        if (self.env_steps - self._last_eval >= self.cfg.run.eval_every_env_steps
                and EVAL not in self.pending.values()):
            self._last_eval = self.env_steps
            seed = self.cfg.run.seed + 10_000 + self.env_steps
            ref = self.evaluator.evaluate.remote(self.weights, self.weights_version,
                                                 self.env_steps, seed)
            self.pending[ref] = EVAL
            self._eval_weights = self.weights
        if self.env_steps - self._last_ckpt >= self.cfg.run.checkpoint_every_env_steps:
            self._last_ckpt = self.env_steps
            try:
                self.save()
            except ray.exceptions.RayActorError:
                _say(f"warning: no checkpoint at {self.env_steps:,} env steps: the learner "
                     f"died while it was asked for its state; the next one is due in "
                     f"{self.cfg.run.checkpoint_every_env_steps:,}")

    def _launch_learner(self) -> None:
        beta = linear(self.cfg.replay.importance_exponent_start, 1.0,
                      self.cfg.run.total_env_steps, self.env_steps)
        ref, weights = self.learner.train.remote(self.cfg.ray.publish_every_updates, beta)
        self.pending[ref] = None
        self._weights_of[ref] = weights

    def _launch_collector(self, i: int) -> None:
        stale = self.collector_version[i] < self.weights_version
        ref = self.collectors[i].collect.remote(self.weights if stale else None,
                                                self.weights_version, self.env_steps)
        self.pending[ref] = i

    def _on_learner(self, ref: ray.ObjectRef, closing: bool = False) -> None:
        weights = self._weights_of.pop(ref)
        try:
            report: LearnerReport = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            if closing:
                raise
            self._on_learner_death(err)
            return
        if self.last_report is None:
            _say(f"learner on {report.device}")
        if self._updates_at_death is not None:     # the first report of a restarted learner
            lost = max(0, self._updates_at_death - report.started_at_updates)
            self.logger.log(self._frames(), {"learner/updates_lost": lost})
            _say(f"the learner is back at {report.started_at_updates:,} updates ({lost:,} "
                 f"lost)")
            self._updates_at_death = None
        self.last_report = report
        self.updates = report.updates
        if report.new_weights:
            self.weights_version += 1
            self.weights = weights

    def _on_learner_death(self, err: Exception) -> None:
        self.learner_restarts += 1
        self._updates_at_death = self.updates
        kept = (f"the checkpoint at {self.saved_env_steps:,} env steps"
                if self.saved_env_steps is not None else "scratch (no checkpoint yet)")
        _say(f"the learner died ({type(err).__name__}); Ray restarts it from {kept}, the "
             f"collectors collecting meanwhile (restart {self.learner_restarts})")
        self.logger.log(self._frames(), {"learner/restarts": self.learner_restarts})
        deadline = time.monotonic() + LEARNER_RESTART_WAIT_S
        while True:  # calls to an actor that is restarting fail at once: wait till it is up
            try:
                ray.get(self.learner.where.remote(), timeout=LEARNER_RESTART_WAIT_S)
                return
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _on_collector(self, i: int, ref: ray.ObjectRef) -> bool:
        """Count a finished chunk; False when the collector is dead or restarting."""
        try:
            report: CollectReport = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            if i not in self.down:        # calls made while it restarts fail too
                self.down.add(i)
                self.restarts += 1
                _say(f"collector {i} died ({type(err).__name__}); Ray restarts it and "
                     f"it resyncs weights (restart {self.restarts})")
                self.logger.log(self._frames(), {"actors/restarts": self.restarts})
            self.collector_version[i] = -1     # the restarted actor must be sent weights
            return False
        self.down.discard(i)
        self.collector_version[i] = report.weights_version
        self.env_steps += report.env_steps
        self.bar.update(report.env_steps)
        for episode in report.episodes:
            self.scores.append(episode.score)
            self.lengths.append(episode.env_steps)
        self.episodes += len(report.episodes)
        return True

    def _on_evaluator(self, ref: ray.ObjectRef) -> None:
        try:
            report: EvalReport = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            self._count_evaluator_restart(type(err).__name__)
            self._evaluator_pid = COUNTED
            return
        if _restarted(self._evaluator_pid, report.pid, report.reconstructed):
            self._count_evaluator_restart("it was restarted by Ray between evaluations")
        self._evaluator_pid = report.pid
        self._on_evaluation(report)

    def _count_evaluator_restart(self, how: str) -> None:
        self.evaluator_restarts += 1
        _say(f"the evaluator died ({how}); Ray restarts it, and an evaluation it was playing "
             f"is due again in {self.cfg.run.eval_every_env_steps:,} env steps "
             f"(restart {self.evaluator_restarts})")
        self.logger.log(self._frames(), {"eval/restarts": self.evaluator_restarts})

    def _on_evaluation(self, report: EvalReport) -> None:
        self.evaluations.append(report)
        mean = float(np.mean(report.returns))
        self.logger.log(report.env_steps * self.cfg.env.frames_per_env_step, {
            "eval/mean_return": mean, "eval/median_return": float(np.median(report.returns)),
            "eval/mean_length": float(np.mean(report.lengths)),
            "eval/weights_version": report.weights_version})
        _say(f"eval at {report.env_steps:,} env steps: mean return {mean:.1f} over "
             f"{len(report.returns)} episodes")
        self.learner.on_evaluation.remote(mean)  # may switch its step (lr_end_after_eval_return)
        if mean >= self.best_return:        # ties go to the later, longer-trained weights
            self.best_return = mean
            self.save_best(report)
        target = self.cfg.run.stop_at_eval_return
        self.target_reached = target is not None and mean >= target

    def _frames(self) -> int:
        return self.env_steps * self.cfg.env.frames_per_env_step

    def _maybe_log(self) -> None:
        if self.env_steps - self._last_log < self.cfg.run.log_every_env_steps:
            return
        self._last_log = self.env_steps
        sps, ups = self._rates.update(self.env_steps, self.updates)
        stats = self.replay_stats()
        size = sum(s.size for s in stats)
        fill = size / max(sum(s.capacity for s in stats), 1)
        metrics = {"charts/SPS": sps, "charts/env_steps": self.env_steps,
                   "charts/frames_per_s": sps * self.cfg.env.frames_per_env_step,
                   "learner/updates": self.updates, "learner/updates_per_s": ups,
                   "replay/size": size, "replay/fill": fill,
                   "replay/inserted": sum(s.inserted for s in stats),
                   "replay/sampled": sum(s.sampled for s in stats),
                   "actors/restarts": self.restarts, "actors/episodes": self.episodes,
                   "actors/weights_version_min": min(self.collector_version),
                   "learner/weights_version": self.weights_version}
        if self.scores:
            metrics["charts/episodic_return"] = float(np.mean(self.scores))
            metrics["charts/episodic_length"] = float(np.mean(self.lengths))
        report = self.last_report
        if report is not None and report.td_loss is not None:
            metrics.update({"losses/td_loss": report.td_loss, "losses/q_values": report.q_mean,
                            "learner/wait_fraction": report.wait_fraction,
                            "charts/learning_rate": report.learning_rate})
        if report is not None and report.dormant is not None:
            metrics.update(dormant_metrics(report.dormant))
        if report is not None and self.cfg.agent.recycle_dormant_every_updates:
            metrics["learner/recycled_units"] = report.recycled_units
        self.logger.log(self._frames(), metrics)
        self.bar.set_postfix(fps=f"{metrics['charts/frames_per_s']:.0f}", ups=f"{ups:.1f}",
                             ret=f"{np.mean(self.scores):.1f}" if self.scores else "-",
                             fill=f"{fill:.0%}")

    def replay_stats(self) -> list[ShardStats]:
        """Each shard's counters; a shard in a new process was restarted by Ray."""
        stats = ray.get([s.stats.remote() for s in self.shards])
        for s, shard in enumerate(stats):
            if _restarted(self.shard_pids[s], shard.pid, shard.reconstructed):
                self.replay_restarts += 1
                _say(f"replay shard {s} was restarted by Ray; it restored {shard.restored:,} "
                     f"records from the last replay save (restart {self.replay_restarts})")
                self.logger.log(self._frames(), {"replay/restarts": self.replay_restarts,
                                                 "replay/restored": shard.restored})
            self.shard_pids[s] = shard.pid
        return stats

    # -- checkpoints and shutdown ----------------------------------------------------

    def save(self) -> Path:
        learner_state = ray.get(self.learner.state.remote())
        path = DistributedCheckpoint(
            self.cfg.to_dict(), learner_state, self.env_steps, self.episodes, self.restarts,
            self.learner_restarts, self.replay_restarts, self.evaluator_restarts,
        ).save(self.ckpt_path)
        if self.replay_dir is not None:
            self._say_replay_errors(ray.get([s.save_replay.remote() for s in self.shards]))
        self.logger.log_checkpoint(path, self._frames())
        self.saved_env_steps = self.env_steps
        return path

    def _say_replay_errors(self, errors: list[str | None]) -> None:
        for s, error in enumerate(errors):
            if error is not None:
                _say(f"warning: shard {s}: {error}; training goes on")

    def save_best(self, report: EvalReport) -> Path:
        return best_weights(self.cfg.to_dict(), ray.get(self._eval_weights),
                            env_steps=report.env_steps, returns=report.returns,
                            weights_version=report.weights_version).save(self.best_path)

    def close(self) -> None:
        try:
            # Take the learner's last report so counters match the checkpoint; collectors'
            # unfinished chunks are dropped from the counts (their frames are in replay).
            for ref, owner in list(self.pending.items()):
                if owner is None:
                    self._on_learner(ref, closing=True)
                elif owner == EVAL:
                    self._on_evaluator(ref)
            self.save()
            if self.replay_dir is not None:
                self._say_replay_errors(ray.get(
                    [s.replay_saved.remote(REPLAY_SAVE_WAIT_S) for s in self.shards]))
        except ray.exceptions.RayActorError:
            # A SIGTERM sent to the whole process group (`timeout`, some job runners)
            # stops Ray's own processes too, and the learner with them: keep what is on
            # disk rather than end in a traceback.
            kept = (f"the checkpoint {self.ckpt_path} from {self.saved_env_steps:,} env "
                    f"steps is kept" if self.saved_env_steps is not None
                    else "no checkpoint was written")
            print(f"warning: no final checkpoint: the learner actor was gone at shutdown "
                  f"(Ray's processes were stopped too); {kept}", file=sys.stderr)
        finally:
            collecting = [ref for ref, owner in self.pending.items()
                          if isinstance(owner, int)]
            self.pending.clear()
            self.bar.close()
            self.logger.close()
            # On a shared cluster the actors would outlive this driver and keep their CPUs.
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(self.learner.stop.remote(), timeout=10)
            for actor in [*self.collectors, self.evaluator, self.learner]:
                ray.kill(actor)  # a no-op for an actor already gone
            # The shards last, once the collectors' calls have ended: an insert still on
            # its way to a shard killed under it would be retried, and say so.
            ray.wait(collecting, num_returns=len(collecting), timeout=5)
            for shard in self.shards:
                ray.kill(shard)
            if self.owns_ray:
                ray.shutdown()


def _say(message: str) -> None:
    """A line above the progress bar, on stderr with it: stdout carries results alone."""
    tqdm.write(message, file=sys.stderr)


class _Rates:
    """Env steps/s and updates/s since the previous call (0, not negative, across a
    learner that restarted from its checkpoint)."""

    def __init__(self, env_steps: int, updates: int):
        self.t, self.env_steps, self.updates = time.perf_counter(), env_steps, updates

    def update(self, env_steps: int, updates: int) -> tuple[float, float]:
        now = time.perf_counter()
        dt = max(now - self.t, 1e-9)
        rates = (env_steps - self.env_steps) / dt, max(0, updates - self.updates) / dt
        self.t, self.env_steps, self.updates = now, env_steps, updates
        return rates


def train_distributed(cfg: Config, progress: bool = True) -> DistributedResult:
    trainer = DistributedTrainer(cfg, progress=progress)
    return trainer.run()


def _restarted(last_pid: int | None, pid: int, reconstructed: bool) -> bool:
    """Whether an actor answering from `pid` was restarted since it last answered from
    `last_pid`: None, it had not answered yet, so only Ray's own word tells; COUNTED, its
    restart was counted when a call to it failed."""
    if last_pid is None:
        return reconstructed
    return last_pid != COUNTED and pid != last_pid
