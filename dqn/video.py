"""Record one full episode in colour as an MP4 (imageio + the ffmpeg that imageio-ffmpeg ships).

AtariVectorEnv returns only the preprocessed grayscale frames, so the video episode runs
in gymnasium's single-env ALE with gymnasium's own `AtariPreprocessing` and frame stack
(the same 84x84 grayscale, frame-skip 4 with max-pooling, no-op starts and zero-padded
stack) and renders the emulator's 210x160 colour screen at every agent decision. The
file holds one frame per decision plus the final frame, at 60 / frame_skip fps.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dqn.config import EnvConfig


class Video(NamedTuple):
    path: Path
    frames: int
    score: float
    env_steps: int


def _single_env(cfg: EnvConfig, seed: int):
    import gymnasium as gym

    if not cfg.is_atari:
        env = gym.make(cfg.id, render_mode="rgb_array")
        return env, env.reset(seed=seed)[0][None].astype(np.float32), 50
    from ale_py.env import AtariEnv
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    ale = AtariEnv(game=cfg.id, frameskip=1, repeat_action_probability=cfg.sticky_action_prob,
                   max_num_frames_per_episode=cfg.max_episode_frames, render_mode="rgb_array")
    env = FrameStackObservation(
        AtariPreprocessing(ale, noop_max=cfg.noop_max, frame_skip=cfg.frame_skip, screen_size=84,
                           terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False),
        stack_size=cfg.frame_stack, padding_type="zero")
    return env, env.reset(seed=seed)[0], 60 // cfg.frame_skip


def record_episode(q_net: torch.nn.Module, cfg: EnvConfig, eps: float, seed: int,
                   path: Path) -> Video:
    import imageio.v2 as imageio

    env, obs, fps = _single_env(cfg, seed)
    rng = np.random.default_rng(seed)
    frames, score, steps, done = [env.render()], 0.0, 0, False
    while not done:
        with torch.no_grad():
            q = q_net(torch.as_tensor(np.asarray(obs)[None]))
        action = int(rng.integers(q.shape[1])) if rng.random() < eps else int(q.argmax())
        obs, reward, terminated, truncated, _ = env.step(action)
        if not cfg.is_atari:
            obs = np.asarray(obs, np.float32)[None]
        frames.append(env.render())
        score += float(reward)
        steps += 1
        done = terminated or truncated
    env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=2,
                            ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(frame)
    return Video(path, len(frames), score, steps)
