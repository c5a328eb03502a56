"""`raydqn bench rllib`: RLlib 2.60's DQN (new API stack) against ours, same settings.

Both sides play the same ALE game with the same preprocessing (84x84 gray, max-pooled
frame skip 4, 4-frame stack, up to 30 no-ops, sticky actions 0.25, clipped rewards),
the same Nature CNN, batch size, learning rate, n-step, double Q, uniform replay of the
same capacity, the same learning start, epsilon schedule and target period, and the
same replay ratio: one batch of 32 per 4 env steps. Each side runs for the same
wall-clock budget in its own child process with its own local Ray, one after the other;
the parent samples the memory of that process's whole tree (driver, raylet, workers).

The replay ratio is checked, not assumed: each side counts its learner updates and env
steps, and the report prints updates per env step in the learning phase. RLlib's knob is
`training_intensity` (replayed transitions per sampled one), turned into a round-robin
of `store_weight` sample calls to `sample_and_train_weight` updates by
`calculate_rr_weights`, whose "native ratio" divides by (num_env_runners + 1) — it counts
the driver's local EnvRunner, which does not sample when remote runners exist. With one
remote runner, training_intensity=8 therefore gives 16 replayed transitions per sampled
one (one update per 2 env steps), which is what its `num_env_steps_trained` counter (32
per update) shows. We pass training_intensity = 8 / (num_env_runners + 1) and count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from dqn.config import Config, load_config
from dqn.errors import UserError
from dqn.learning import resolve_device
from dqn.precision import bfloat16_passes
from learner.bench.timing import Meter

SIDES = ("ours", "rllib")


def bench_rllib(preset: str, overrides: list[str], seconds: float) -> dict:
    """Run ours, then RLlib, each for `seconds` after start-up; JSON-ready report."""
    cfg = load_config(preset, overrides)  # bad input fails here, before anything starts
    if not cfg.env.is_atari:
        raise UserError(f"bench rllib compares Atari agents; env.id = {cfg.env.id!r} is not "
                        f"an ALE game")
    report: dict = {"seconds_per_side": seconds}
    for side in SIDES:
        cmd = [sys.executable, "-m", "learner.bench.rllib", side, preset, str(seconds),
               *overrides]
        report[side] = _run_measured(cmd)
    ours, rllib = report["ours"], report["rllib"]
    report["settings"] = ours.pop("settings")
    report["env_steps_per_s_ratio"] = round(
        ours["learning_env_steps_per_s"] / max(rllib["learning_env_steps_per_s"], 1e-9), 2)
    report["updates_per_s_ratio"] = round(
        ours["learning_updates_per_s"] / max(rllib["learning_updates_per_s"], 1e-9), 2)
    for kind in ("rss", "pss"):
        report[f"peak_{kind}_ratio"] = round(
            ours[f"peak_{kind}_mb"] / max(rllib[f"peak_{kind}_mb"], 1e-9), 3)
    return report


def _run_measured(cmd: list[str]) -> dict:
    """Run `cmd`, sampling the summed RSS and PSS of its process tree every second."""
    out = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    peaks = {"rss": 0.0, "pss": 0.0}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.wait(1.0):
            rss = pss = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    info = p.memory_full_info()
                    rss, pss = rss + info.rss, pss + info.pss
            except psutil.Error:  # a process ended mid-sample: keep the last full one
                continue
            peaks["rss"], peaks["pss"] = max(peaks["rss"], rss), max(peaks["pss"], pss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    done.set()
    sampler.join()
    out.seek(0)
    lines = out.read().strip().splitlines()
    if code != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[2:4])} failed with exit code {code}: "
                           f"{lines[-1] if lines else 'no output'}")
    result = json.loads(lines[-1])
    result["peak_rss_mb"] = round(peaks["rss"] / 2**20)
    result["peak_pss_mb"] = round(peaks["pss"] / 2**20)
    return result


def bench_config(preset: str, overrides: list[str]) -> Config:
    """The shared settings: the preset with the user's overrides, uniform replay,
    no evaluation or checkpoints inside the budget, a fresh run folder."""
    return load_config(preset, [*overrides, "replay.prioritized=false",
                                "network.dueling=false", "network.torso=nature",
                                "network.conv1_init=torch",
                                "run.name=bench-rllib",
                                f"run.out_dir={tempfile.mkdtemp(prefix='raydqn-bench-')}",
                                "run.eval_every_env_steps=1000000000",
                                "run.log_every_env_steps=1000000000",
                                "run.checkpoint_every_env_steps=1000000000"])


def run_ours(cfg: Config, seconds: float) -> dict:
    from learner.cluster import init_ray
    from learner.driver import DistributedTrainer

    init_ray(cfg)
    trainer = DistributedTrainer(cfg, progress=False)
    meter = Meter(cfg.replay.learning_starts_env_steps)
    while time.perf_counter() - meter.start < seconds:
        trainer.step()
        meter.tick(trainer.env_steps, trainer.updates)
    result = meter.report(trainer.env_steps, trainer.updates)
    result["replay_bytes_per_transition"] = _replay_bytes_per_transition(cfg)
    result["replay_transitions_at_end"] = sum(s.size for s in trainer.replay_stats())
    trainer.close()
    return result


def _replay_bytes_per_transition(cfg: Config) -> float:
    """Bytes our replay shards allocate per transition of capacity (frames stored once,
    plus actions, rewards, flags and the sum tree)."""
    import numpy as np

    from dqn.replay import FrameReplay

    store = FrameReplay(cfg.replay.capacity_transitions, cfg.env.num_envs * cfg.ray.num_collectors,
                        (84, 84), np.uint8, stack=cfg.env.frame_stack, n_step=cfg.agent.n_step,
                        gamma=cfg.agent.gamma, prioritized=cfg.replay.prioritized)
    return round(store.nbytes() / store.capacity, 1)


def main(argv: list[str]) -> None:
    side, preset, seconds, *overrides = argv
    cfg = bench_config(preset, overrides)
    if side == "ours":
        result = run_ours(cfg, float(seconds))
        result["settings"] = settings(cfg)
    else:
        from learner.bench.rllib_side import run_rllib

        result = run_rllib(cfg, float(seconds))
    print(json.dumps(result), flush=True)


def settings(cfg: Config) -> dict:
    return {"game": cfg.env.id, "frame_skip": cfg.env.frame_skip,
            "frame_stack": cfg.env.frame_stack, "sticky_action_prob": cfg.env.sticky_action_prob,
            "noop_max": cfg.env.noop_max, "network": "Nature CNN (32x8x8/4, 64x4x4/2, "
            "64x3x3/1, 512), double Q", "n_step": cfg.agent.n_step,
            "batch_size": cfg.agent.batch_size, "learning_rate": cfg.agent.learning_rate,
            "env_steps_per_update": cfg.agent.update_every_env_steps,
            "replay": f"uniform, {cfg.replay.capacity_transitions} transitions",
            "learning_starts_env_steps": cfg.replay.learning_starts_env_steps,
            "target_period_env_steps": cfg.agent.target_update_period_updates
            * cfg.agent.update_every_env_steps,
            "eps": f"{cfg.explore.eps_start} -> {cfg.explore.eps_end} over "
                   f"{cfg.explore.eps_decay_env_steps} env steps",
            "actors": f"{cfg.ray.num_collectors} x {cfg.env.num_envs} envs",
            "our_learner": f"{cfg.ray.learner_threads} torch thread(s), "
                           + ("bfloat16 autocast passes, float32 weights"
                              if bfloat16_passes(cfg.agent.precision,
                                                 resolve_device(cfg.run.device),
                                                 ("conv2d", "linear"))
                              else "float32")}


if __name__ == "__main__":
    main(sys.argv[1:])
