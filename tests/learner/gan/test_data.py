"""The GAN's data: ALE frames rendered deterministically for a seed, played by a DQN
checkpoint when given, and users' image folders labelled by sub-folder."""

import numpy as np
import pytest
from PIL import Image

from dqn.errors import UserError
from learner.gan.data import FramePlan, build_frames, load_frames, load_image_folder


def test_frame_builder_is_deterministic_for_a_seed(tmp_path):
    plan = FramePlan(("pong",), frames_per_game=6, keep_every_env_steps=3, image_size=16,
                     seed=4)
    first = load_frames(build_frames(plan, tmp_path / "a", progress=False))
    again = load_frames(build_frames(plan, tmp_path / "b", progress=False))
    other = load_frames(build_frames(plan._replace(seed=5), tmp_path / "a", progress=False))
    assert first.images.shape == (6, 16, 16, 3) and first.images.dtype == np.uint8
    assert np.array_equal(first.images, again.images) and first.names == ("pong",)
    assert first.labels.tolist() == [0] * 6
    assert not np.array_equal(first.images, other.images)


def fake_dqn_checkpoint(path, game):
    """A DQN checkpoint in our format with untrained weights: enough to act greedily."""
    from dqn.checkpoint import best_weights
    from dqn.config import load_config
    from dqn.networks import QNetwork

    cfg = load_config("laptop", [f"env.id={game}"])
    net = QNetwork((4, 84, 84), 6, cfg.network)
    return best_weights(cfg.to_dict(), net.state_dict(), env_steps=0, returns=[0.0]).save(path)


def test_frames_from_a_dqn_checkpoint_and_its_game_check(tmp_path):
    ckpt = fake_dqn_checkpoint(tmp_path / "dqn.pt", "space_invaders")
    plan = FramePlan(("space_invaders",), frames_per_game=4, keep_every_env_steps=2,
                     image_size=16, seed=0, dqn_checkpoints=(str(ckpt),), dqn_eps=0.0)
    frames = load_frames(build_frames(plan, tmp_path, progress=False))
    assert frames.images.shape == (4, 16, 16, 3) and frames.names == ("space_invaders",)
    with pytest.raises(UserError, match="plays 'space_invaders'"):
        build_frames(plan._replace(games=("pong",)), tmp_path, progress=False)


def test_image_folder_labels_by_sub_folder(tmp_path):
    for name, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (20, 30), colour).save(tmp_path / name / f"{i}.png")
    frames = load_image_folder(tmp_path, 16)
    assert frames.names == ("cats", "dogs") and frames.labels.tolist() == [0, 0, 1, 1]
    assert frames.images.shape == (4, 16, 16, 3)
    assert frames.images[0, 0, 0].tolist() == [255, 0, 0]
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.jpg"):
        load_image_folder(tmp_path, 16)
