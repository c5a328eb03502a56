"""`raydqn bench replay|env`: the parts without Ray, each beside its bare limit measured in
the same run.

- replay: bytes per stored Atari transition at 1M capacity (arrays allocated lazily, not
  touched), and batches/s from a full 200K-transition store, uniform and prioritized, at
  batch 32 and 512, next to the bare cost of gathering the same bytes — two runs of 4
  consecutive frames per transition at random places, one fancy index — the floor any
  frame-once store pays.
- env: the bare `AtariVectorEnv` loop with random actions (env steps/s and frames/s),
  the limit collectors are measured against.
"""

from __future__ import annotations

import os
import time

import numpy as np

from dqn.config import build_config
from dqn.recorder import Records
from dqn.replay import FrameReplay
from learner.bench.timing import calls_per_s, paired_rates

FRAME = (84, 84)


def _atari_store(capacity: int, streams: int, prioritized: bool, seed: int = 0) -> FrameReplay:
    return FrameReplay(capacity, streams, FRAME, np.uint8, stack=4, n_step=3, gamma=0.99,
                       prioritized=prioritized, seed=seed)


def _fill(store: FrameReplay, transitions: int, chunk: int, rng: np.random.Generator) -> float:
    """Write synthetic Atari records (episodes of ~800 steps); returns records/s."""
    streams = store.num_streams
    frames = rng.integers(0, 256, (chunk, streams, *FRAME), dtype=np.uint8)
    start, written = time.perf_counter(), 0
    while written < transitions:
        ends = rng.random((chunk, streams)) < 1 / 800
        records = Records(frame=frames, action=rng.integers(0, 6, (chunk, streams)),
                          reward=rng.choice([-1.0, 0.0, 1.0], (chunk, streams)).astype(np.float32),
                          terminated=ends, first=np.roll(ends, 2, axis=0),
                          last=np.roll(ends, 1, axis=0))
        records.first[0] |= written == 0
        store.add(records)
        written += chunk * streams
    return written / (time.perf_counter() - start)


def bench_replay(seconds: float = 3.0) -> dict:
    big = _atari_store(1_000_000, 8, prioritized=True)
    report: dict = {
        "bytes_per_transition_1M": round(big.nbytes() / big.capacity, 1),
        "bytes_per_transition_naive_stacked": 2 * 4 * 84 * 84,
    }
    del big
    rng = np.random.default_rng(0)
    for prioritized in (False, True):
        store = _atari_store(200_000, 8, prioritized)
        store.frame.fill(0)  # fault the pages in, so the add rate is not the kernel's
        add_rate = _fill(store, 200_000, 250, rng)
        kind = "prioritized" if prioritized else "uniform"
        report[f"{kind}_add_transitions_per_s"] = round(add_rate)
        for batch in (32, 512):
            runs = np.arange(4)
            index = lambda: rng.integers(0, store.capacity - 4, (2, batch, 1)) + runs  # noqa: E731
            rate, bare = paired_rates(lambda: store.sample(batch, beta=0.4),
                                       lambda: store.frame[index()], seconds)
            report[f"{kind}_batch{batch}_batches_per_s"] = round(rate, 1)
            report[f"bare_gather_batch{batch}_batches_per_s"] = round(bare, 1)
            report[f"{kind}_batch{batch}_ratio_to_bare_gather"] = round(rate / bare, 3)
        if prioritized:
            report.update(_bench_save(store, rng, add_rate))
        del store
    return report


def _bench_save(store: FrameReplay, rng: np.random.Generator, add_rate: float) -> dict:
    """A full 200K-record store saved (dqn.replay_files), then 10K more records: the pause
    (what a shard holds its lock for), the background write against one plain np.save of
    the same frames, and inserts while a save is written against inserts alone."""
    import tempfile
    from pathlib import Path

    from dqn.replay_files import ReplayFiles

    with tempfile.TemporaryDirectory() as folder:
        files = ReplayFiles(Path(folder) / "replay")
        t0 = time.perf_counter()
        files.save(store)
        pause = time.perf_counter() - t0
        inserted = 0
        while files.busy():                      # inserts go on while it writes
            _fill(store, 2_000, 250, rng)
            inserted += 2_000
        write = time.perf_counter() - t0
        during = inserted / write
        files.save(store)                        # what came in meanwhile, untimed
        files.wait()
        t0 = time.perf_counter()
        np.save(Path(folder) / "bare.npy", store.frame)
        bare = time.perf_counter() - t0
        _fill(store, 10_000, 250, rng)
        t0 = time.perf_counter()
        files.save(store)
        small_pause = time.perf_counter() - t0
        files.wait()
        small = time.perf_counter() - t0
    return {"save_full_pause_ms": round(1000 * pause, 2),
            "save_full_write_s": round(write, 2), "bare_np_save_frames_s": round(bare, 2),
            "save_full_ratio_to_bare_write": round(bare / write, 3),
            "add_during_save_ratio_to_add": round(during / add_rate, 3),
            "save_incremental_10k_pause_ms": round(1000 * small_pause, 2),
            "save_incremental_10k_write_s": round(small, 3)}


def bench_env(game: str, seconds: float = 3.0, num_envs: int = 16) -> dict:
    from dqn.envs import make_vector_env

    cfg = build_config({"env": {"id": game, "num_envs": num_envs}})
    env = make_vector_env(cfg.env, num_threads=os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    actions = lambda: rng.integers(0, env.num_actions, num_envs)  # noqa: E731
    steps_per_s = calls_per_s(lambda: env.step(actions()), seconds) * num_envs
    env.close()
    return {"game": game, "num_envs": num_envs, "cpu_count": os.cpu_count(),
            "env_steps_per_s": round(steps_per_s),
            "frames_per_s": round(steps_per_s * cfg.env.frame_skip)}
