"""Image data for the generative models: real Atari frames, or a user's image folder.

No image dataset can be downloaded here, but the emulator renders as many real game
frames as we like. `build_frames` plays each game (random actions, or ε-greedy from
one of our DQN checkpoints for that game), keeps every k-th env step's RGB screen
resized to a square (cv2 INTER_AREA, the usual choice for shrinking; nearest; or
salient, which keeps small objects such as a ball: see RESIZE), and labels it by
game. The result is cached as one .npz keyed by every setting that changes it, so a
rerun (or a Ray Train worker reading it by absolute path) reuses it; the same seed
gives the same frames.

`load_image_folder` reads a user's own data: one sub-folder per class (the label),
png or jpg files inside.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch

from dqn.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class FrameSet(NamedTuple):
    images: np.ndarray        # (N, size, size, 3) uint8 RGB
    labels: np.ndarray        # (N,) int64, index into `names`
    names: tuple[str, ...]    # class names: games, or an image folder's sub-folders


class FramePlan(NamedTuple):
    """Everything that decides which frames `build_frames` produces (the cache key)."""

    games: tuple[str, ...]
    frames_per_game: int
    keep_every_env_steps: int
    image_size: int
    seed: int
    dqn_checkpoints: tuple[str, ...] = ()
    dqn_eps: float = 0.05
    resize: str = "area"      # see RESIZE


# How a 210x160 screen shrinks to image_size squares. area (cv2 INTER_AREA) averages
# the pixels each output pixel covers: smooth, but a 4-pixel paddle or a 2-pixel ball
# becomes one pixel of a blend of its colour and the background's. nearest keeps one
# screen pixel per output pixel: jagged edges; an object that is hit keeps its own
# palette colour at full contrast, but one between two sampled pixels is dropped.
# salient looks at every screen pixel an output pixel covers and keeps the one whose
# colour is rarest on that screen: a patch of field stays field, a patch that
# holds any part of a ball, a paddle or a sprite takes that object's colour at full
# contrast, so no object is blended away or dropped (small ones grow to whole pixels).
# The cv2 methods by name; salient is our own (_salient).
RESIZE = {"area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


def check_games(games: Sequence[str]) -> None:
    from ale_py import roms  # the ROM list; imported late as only ALE data needs it

    known = roms.get_all_rom_ids()
    for game in games:
        if game not in known:
            raise UserError(f"unknown game {game!r}: not a ROM ale-py ships (snake_case "
                            f"names such as pong, breakout, space_invaders, seaquest)")


def cache_path(plan: FramePlan, cache_dir: Path) -> Path:
    fields = plan._asdict()
    if plan.resize == "area":  # the key a plan had before `resize` was a setting
        del fields["resize"]
    key = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir.resolve() / f"frames-{'-'.join(plan.games)}-{plan.image_size}px-{key}.npz"


def build_frames(plan: FramePlan, cache_dir: Path, progress: bool = True) -> Path:
    """The cached .npz for `plan`, played and written first if it is not there yet."""
    path = cache_path(plan, cache_dir)
    if path.is_file():
        return path
    check_games(plan.games)
    policies = _load_policies(plan)
    from tqdm import tqdm

    bar = tqdm(total=plan.frames_per_game * len(plan.games), unit="frame",
               desc="rendering ALE frames", disable=not progress)
    images = [_play(game, i, plan, policies.get(game), bar) for i, game in
              enumerate(plan.games)]
    bar.close()
    labels = np.repeat(np.arange(len(plan.games)), plan.frames_per_game)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")  # np.savez keeps a name ending in .npz as it is
    np.savez_compressed(tmp, images=np.concatenate(images), labels=labels,
                        names=np.array(plan.games))
    os.replace(tmp, path)
    return path


def load_frames(path: Path) -> FrameSet:
    try:
        with np.load(path) as data:
            return FrameSet(data["images"], data["labels"].astype(np.int64),
                            tuple(str(n) for n in data["names"]))
    except (OSError, KeyError, ValueError) as err:
        raise UserError(f"frame file {str(path)!r} is missing or not a raydqn frame set "
                        f"({type(err).__name__})") from None


def _play(game: str, index: int, plan: FramePlan, policy: torch.nn.Module | None,
          bar) -> np.ndarray:
    """`plan.frames_per_game` RGB screens of `game`, one every k env steps."""
    from ale_py.env import AtariEnv
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    # The DQN's own observation (84x84 gray, 4-stack) drives the policy; the RGB
    # screen we keep comes from the emulator through render().
    env = FrameStackObservation(AtariPreprocessing(
        AtariEnv(game=game, frameskip=1, repeat_action_probability=0.25,
                 render_mode="rgb_array"),
        noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False), 4)
    rng = np.random.default_rng([plan.seed, index])
    obs, _ = env.reset(seed=plan.seed * 1000 + index)
    kept = np.empty((plan.frames_per_game, plan.image_size, plan.image_size, 3), np.uint8)
    n_actions = env.action_space.n
    for step in range(plan.frames_per_game * plan.keep_every_env_steps):
        if policy is None or rng.random() < plan.dqn_eps:
            action = int(rng.integers(n_actions))
        else:
            with torch.no_grad():
                action = int(policy(torch.as_tensor(obs[None])).argmax(1))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
        if step % plan.keep_every_env_steps == 0:
            screen = resize(env.render(), plan.image_size, plan.resize)
            kept[step // plan.keep_every_env_steps] = screen
            bar.update(1)
    env.close()
    return kept


def resize(rgb: np.ndarray, size: int, method: str = "area") -> np.ndarray:
    if method == "salient":
        return _salient(rgb, size)
    return cv2.resize(rgb, (size, size), interpolation=RESIZE[method])


def _block_index(length: int, size: int) -> np.ndarray:
    """(size, k): the source indices each output index covers, the last repeated to k."""
    starts = np.arange(size) * length // size
    ends = np.maximum((np.arange(size) + 1) * length // size, starts + 1)
    k = int((ends - starts).max())
    return np.minimum(starts[:, None] + np.arange(k), ends[:, None] - 1)


def _salient(rgb: np.ndarray, size: int) -> np.ndarray:
    rows, cols = _block_index(rgb.shape[0], size), _block_index(rgb.shape[1], size)
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) \
        | rgb[..., 2]
    _, where, count = np.unique(packed, return_inverse=True, return_counts=True)
    rarity = -count[where.reshape(packed.shape)]                  # fewer pixels: rarer
    block = (rows[:, :, None, None], cols[None, None, :, :])      # (S, kr, S, kc)
    pick = rarity[block].transpose(0, 2, 1, 3).reshape(size, size, -1).argmax(-1)
    kc = cols.shape[1]
    y = np.take_along_axis(rows, pick // kc, 1)                   # y[i, j] = rows[i, .]
    x = np.take_along_axis(cols, (pick % kc).T, 1).T              # x[i, j] = cols[j, .]
    return rgb[y, x]


def _load_policies(plan: FramePlan) -> dict[str, torch.nn.Module]:
    """Each DQN checkpoint's Q-network, keyed by the game it was trained on."""
    from dqn.checkpoint import Checkpoint, load_weights
    from dqn.config import build_config
    from dqn.envs import make_vector_env
    from dqn.networks import QNetwork

    policies = {}
    for text in plan.dqn_checkpoints:
        path = Path(text)
        state = Checkpoint.load(path)
        cfg = build_config(state.config)
        if cfg.env.id not in plan.games:
            raise UserError(f"DQN checkpoint {text!r} plays {cfg.env.id!r}, which is not "
                            f"one of data.games ({', '.join(plan.games)})")
        if (cfg.env.frame_stack, cfg.env.frame_skip) != (4, 4):
            raise UserError(f"DQN checkpoint {text!r} uses frame_stack "
                            f"{cfg.env.frame_stack} and frame_skip {cfg.env.frame_skip}; "
                            f"the frame builder plays with 4 and 4")
        probe = make_vector_env(cfg.env, num_envs=1)
        net = QNetwork(probe.obs_shape, probe.num_actions, cfg.network).eval()
        probe.close()
        load_weights(net, state.learner["online"], path)
        policies[cfg.env.id] = net
    return policies


def load_image_folder(folder: Path, image_size: int) -> FrameSet:
    """Images from `folder/<class>/*.png|jpg`, resized to `image_size` squares."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {str(folder)!r} does not exist")
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    files = [(f, label) for label, c in enumerate(classes) for f in sorted(c.iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"image folder {str(folder)!r} holds no images (expected one "
                        f"sub-folder per class with {'/'.join(IMAGE_SUFFIXES)} files)")
    images = np.empty((len(files), image_size, image_size, 3), np.uint8)
    for i, (file, _) in enumerate(files):
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"image {str(file)!r} is not a readable image")
        images[i] = resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), image_size)
    labels = np.array([label for _, label in files], np.int64)
    return FrameSet(images, labels, tuple(c.name for c in classes))


def save_frames(frames: FrameSet, path: Path) -> Path:
    """An image folder's frames in the same .npz form the workers read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=frames.images, labels=frames.labels,
                        names=np.array(frames.names))
    os.replace(tmp, path)
    return path


def split_heldout(frames: FrameSet, fraction: float, seed: int) -> tuple[FrameSet, FrameSet]:
    """(train, held-out): the same `fraction` of every class held out, chosen by seed."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in range(len(frames.names)):
        idx = rng.permutation(np.flatnonzero(frames.labels == label))
        cut = int(round(len(idx) * fraction))
        held.append(idx[:cut])
        train.append(idx[cut:])
    return _subset(frames, np.concatenate(train)), _subset(frames, np.concatenate(held))


def _subset(frames: FrameSet, idx: np.ndarray) -> FrameSet:
    idx = np.sort(idx)
    return FrameSet(frames.images[idx], frames.labels[idx], frames.names)


def dataset_file(plan: FramePlan, image_folder: str | None, cache_dir: Path,
                 progress: bool = True) -> Path:
    """The .npz the workers read: rendered ALE frames, or the user's image folder
    converted once (keyed by its path, file names, sizes and times)."""
    if image_folder is None:
        return build_frames(plan, cache_dir, progress)
    folder = Path(image_folder).resolve()
    listing = sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns)
                     for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else []
    key = hashlib.sha1(json.dumps([str(folder), plan.image_size, listing]).encode())
    path = cache_dir.resolve() / f"folder-{folder.name}-{plan.image_size}px-{key.hexdigest()[:12]}.npz"
    if not path.is_file():
        save_frames(load_image_folder(folder, plan.image_size), path)
    return path

