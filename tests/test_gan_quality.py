"""The GAN's quality numbers: the Fréchet distance and pixel spread maths, the sample grid,
and `raydqn gan calibrate`'s scale of real frames spoilt or collapsed."""

import json

import numpy as np
import pytest
import torch

from dqn.gan_quality import frechet_distance, image_grid, pixel_spread
from learner.cli import main


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_frechet_distance_is_zero_for_one_set_and_grows_as_squared_mean_shift(shift):
    feats = np.random.default_rng(0).normal(size=(500, 6))
    # same covariance, mean moved by `shift` in each of 6 dims: distance 6 shift^2
    assert frechet_distance(feats, feats + shift) == pytest.approx(6 * shift ** 2, abs=1e-6)


def test_frechet_distance_sees_a_change_of_spread():
    feats = np.random.default_rng(1).normal(size=(2000, 3))
    # covariance S -> 4 S, same mean (0 up to sampling): Tr(S + 4S - 2 (4 S^2)^(1/2))
    # = Tr(S), plus the squared distance between the means m and 2m
    s = np.cov(feats, rowvar=False)
    expected = np.trace(s) + (feats.mean(0) ** 2).sum()
    assert frechet_distance(feats, feats * 2) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(3.0, rel=0.05)


def test_pixel_spread_is_zero_for_copies_and_grows_with_difference():
    same = np.full((5, 4, 4, 3), 77, np.uint8)
    assert pixel_spread(same) == 0.0 and pixel_spread(same[:1]) == 0.0
    black_white = np.stack([np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)])
    assert pixel_spread(black_white) == pytest.approx(np.sqrt(2))   # values 0 and 2
    dot = same.copy()
    dot[0, 0, 0] = 255                                              # one pixel differs
    assert 0 < pixel_spread(dot) < pixel_spread(black_white) / 10
    assert pixel_spread(torch.from_numpy(dot)) == pixel_spread(dot)


def test_image_grid_tiles_images_in_rows():
    images = np.stack([np.full((3, 4, 4), v, np.uint8) for v in (10, 20, 30)])
    grid = image_grid(images, columns=2, pad=1)
    assert grid.shape == (1 + 2 * 5, 1 + 2 * 5, 3)
    assert grid[1, 1, 0] == 10 and grid[1, 6, 0] == 20 and grid[6, 1, 0] == 30


def test_calibrate_scores_real_frames_spoilt_or_collapsed_against_the_baseline(
        tmp_path, capsys):
    data = ["data.games=[pong,breakout]", "data.frames_per_game=80", "data.image_size=32",
            "data.keep_every_env_steps=4", "data.heldout_fraction=0.5",
            "quality.classifier_updates=100", "quality.samples=80",
            f"data.cache_dir={tmp_path}"]
    assert main(["gan", "calibrate", *data]) == 0
    refs = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(refs) == ["half A (the baseline)", "training frames", "half A shifted 1 px",
                          "half A + noise of 4/255", "half A blurred 1 px",
                          "per-game mean frame", "one real frame per game"]
    assert refs["half A (the baseline)"]["ratio"] == pytest.approx(1.0)
    # a set with no spread within a game is far from real frames that have some
    assert refs["one real frame per game"]["ratio"] > 3
    assert refs["per-game mean frame"]["ratio"] > 3
    assert all(r["cfd"] >= 0 for r in refs.values())


def test_blur_keeps_a_flat_image_and_spreads_a_point():
    from dqn.gan_quality import blurred

    flat = np.full((1, 9, 9, 3), 120, np.uint8)
    assert np.array_equal(blurred(flat, 1.0), flat)
    point = np.zeros((1, 9, 9, 3), np.uint8)
    point[0, 4, 4] = 255
    out = blurred(point, 1.0).astype(int)
    assert out[0, 4, 4, 0] < 255 and out[0, 4, 5, 0] > 0 and out[0, 0, 0, 0] == 0
    assert abs(out[..., 0].sum() - 255) <= 20       # the light is moved, not lost
