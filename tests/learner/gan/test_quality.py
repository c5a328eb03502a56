"""The GAN's quality numbers: the Fréchet distance and pixel spread maths, the sample grid,
and `raydqn gan calibrate`'s scale of real frames spoilt or collapsed."""

import json

import numpy as np
import pytest
import torch

from learner.gan.data import FrameSet
from learner.gan.quality import (Judge, balanced_halves, frechet_distance,
                                 image_grid, nchw, pixel_spread, predict,
                                 train_classifier)
from learner.gan.config import GanConfig
from dqn.schema import load_config
from learner.cli import main
from learner.gan.job import _drawn, selection_cfd


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


def test_balanced_halves_are_disjoint_hold_every_class_alike_and_differ_by_split():
    labels = np.array([0] * 9 + [1] * 30 + [2] * 4)
    games, halves = balanced_halves(labels, 4, per_class=6, splits=5, seed=0)
    # class 0 gives 4 a half (9 // 2), class 1 the 6 asked, class 2 two, class 3 none
    assert games.tolist() == [0] * 4 + [1] * 6 + [2] * 2
    for a, b in halves:
        assert not set(a) & set(b)
        assert labels[a].tolist() == labels[b].tolist() == games.tolist()
    assert len({tuple(a) for a, _ in halves}) == 5


def test_judge_averages_its_splits_and_scores_real_frames_near_the_baseline():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (120, 16, 16, 3), dtype=np.uint8)
    images[60:] //= 4                                   # class 1 darker
    heldout = FrameSet(images, np.repeat([0, 1], 60), ("light", "dark"))
    model = train_classifier(heldout, updates=40, width=4, seed=0)
    judge = Judge(model, heldout, seed=3, samples=40, splits=6)
    feats = predict(model, nchw(images))[0]
    each = [frechet_distance(feats[a], feats[b]) for a, b in judge.halves]
    assert judge.baseline == pytest.approx(np.mean(each)) and len(set(each)) == 6
    # a set of other real frames of the same games scores about the baseline; one frame
    # per game repeated is far
    a0 = judge.halves[0][0]
    real = judge.score([nchw(images[a0])], judge.labels)
    assert real.conditional_accuracy == 1.0 and 0.3 < real.ratio < 3
    one = images[a0].copy()
    one[judge.labels == 0], one[judge.labels == 1] = images[0], images[60]
    assert judge.score([nchw(one)], judge.labels).ratio > 5 * real.ratio
    # two draws: the mean of their CFDs; the conditional accuracy of all samples
    both = judge.score([nchw(images[a0]), nchw(one)], judge.labels)
    assert both.cfd == pytest.approx((real.cfd + judge.score([nchw(one)], judge.labels).cfd)
                                     / 2)


def test_copying_the_game_a_generator_draws_badly_takes_most_of_its_distance_away():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (240, 16, 16, 3), dtype=np.uint8)
    labels = np.tile(np.repeat([0, 1], 60), 2)          # held-out frames, then copies
    images[labels == 1] //= 4                           # class 1 darker
    heldout = FrameSet(images[:120], labels[:120], ("light", "dark"))
    model = train_classifier(heldout, updates=40, width=4, seed=0)
    judge = Judge(model, heldout, seed=3, samples=40, splits=6)
    copies = predict(model, nchw(images[120:]))[0]      # other frames of the same games
    a0 = judge.halves[0][0]
    drawn = images[a0].copy()
    drawn[judge.labels == 0] = images[0]                # game 0 collapsed to one frame
    scored = judge.score([nchw(drawn)], judge.labels)   # keeps the draws' features
    feats, bad = scored.feats, scored.cfd
    assert np.array_equal(feats[0], predict(model, nchw(drawn))[0])
    fixed = judge.game_copied(feats, 0, copies[labels[120:] == 0], seed=0)
    other = judge.game_copied(feats, 1, copies[labels[120:] == 1], seed=0)
    # the bad game copied: about the real-vs-real distance; the good game copied: not
    assert fixed < 1.5 * judge.baseline < bad / 3 and other > bad / 2
    # each game's own distance to its frames, over its own real-vs-real one, names it
    games = scored.metrics()
    assert games["games/cfd_ratio/light"] > 5 * games["games/cfd_ratio/dark"]
    assert 0.3 < games["games/cfd_ratio/dark"] < 1.5
    with pytest.raises(ValueError, match="3 copies"):
        judge.game_copied(feats, 0, copies[:3], seed=0)


def test_the_kept_generator_is_chosen_by_the_mean_of_its_own_selection_draws():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (120, 16, 16, 3), dtype=np.uint8)
    heldout = FrameSet(images, np.repeat([0, 1], 60), ("a", "b"))
    model = train_classifier(heldout, updates=10, width=4, seed=0)
    judge = Judge(model, heldout, seed=3, samples=40, splits=4)
    cfg = load_config("conditional", ("run.seed=5", "model.latent_size=8",
                                      "quality.selection_draws=3"), GanConfig)

    class NoiseImage(torch.nn.Module):   # each image a function of its noise vector
        def forward(self, z, labels):
            return torch.tanh(z.repeat(1, 96)[:, :768].reshape(-1, 3, 16, 16))

    g = NoiseImage()
    one = [judge.selection_cfd(_drawn(cfg, g, judge.labels, 5 + s)) for s in range(1, 8)]
    assert len(set(one)) == 7                            # every seed draws other samples
    # seeds 5 + 2, + 4, + 6 (the report draws take 5 + 1, + 3, ...)
    assert selection_cfd(cfg, g=g, judge=judge) == pytest.approx(np.mean(one[1::2][:3]))


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
                          "per-game mean frame", "one real frame per game",
                          "half A, the closest of 200 splits",
                          "half A, the farthest of 200 splits"]
    assert refs["half A (the baseline)"]["ratio"] == pytest.approx(1.0)
    assert (refs["half A, the closest of 200 splits"]["ratio"] < 1
            < refs["half A, the farthest of 200 splits"]["ratio"])
    # a set with no spread within a game is far from real frames that have some
    assert refs["one real frame per game"]["ratio"] > 3
    assert refs["per-game mean frame"]["ratio"] > 3
    assert all(r["cfd"] >= 0 for r in refs.values())


def test_blur_keeps_a_flat_image_and_spreads_a_point():
    from learner.gan.quality import blurred

    flat = np.full((1, 9, 9, 3), 120, np.uint8)
    assert np.array_equal(blurred(flat, 1.0), flat)
    point = np.zeros((1, 9, 9, 3), np.uint8)
    point[0, 4, 4] = 255
    out = blurred(point, 1.0).astype(int)
    assert out[0, 4, 4, 0] < 255 and out[0, 4, 5, 0] > 0 and out[0, 0, 0, 0] == 0
    assert abs(out[..., 0].sum() - 255) <= 20       # the light is moved, not lost


@pytest.mark.parametrize("every, report_epochs", [(3, (3, 6)), (0, (6,))])
def test_between_report_draws_only_selection_draws_run_and_the_kept_numbers_wait_for_the_end(
        tmp_path, monkeypatch, every, report_epochs):
    import learner.gan.job as job

    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (120, 16, 16, 3), dtype=np.uint8)
    heldout = FrameSet(images, np.repeat([0, 1], 60), ("a", "b"))
    judge = Judge(train_classifier(heldout, updates=10, width=4, seed=0), heldout,
                  seed=3, samples=40, splits=4)
    cfg = load_config("conditional", ("model.latent_size=8", "quality.draws=2",
                                      "quality.selection_draws=2",
                                      f"quality.report_every_epochs={every}"), GanConfig)

    class Scaled(torch.nn.Module):   # each image a function of its noise, times a weight
        def __init__(self):
            super().__init__()
            self.amplitude = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, z, labels):
            return torch.tanh(self.amplitude * z.repeat(1, 96)[:, :768].reshape(-1, 3, 16, 16))

    class Rows:
        def __init__(self):
            self.rows = []

        def log(self, step, row):
            self.rows.append(row)

        def log_image(self, *args):
            pass

    reported = []
    score = job.score_generator
    monkeypatch.setattr(job, "score_generator", lambda c, j, g: reported.append(
        round(g.amplitude.item(), 3)) or score(c, j, g))
    lead = job._Lead.__new__(job._Lead)
    lead.cfg, lead.run_dir, lead.judge, lead.names = cfg, tmp_path, judge, heldout.names
    lead.logger, lead.best, lead.best_weights = Rows(), None, None
    lead.grid_z, lead.grid_labels = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
    g = Scaled()
    amplitudes = [0.3, 2.0, 0.2, 1.0, 3.0, 0.5]
    for epoch, amplitude in enumerate(amplitudes, 1):
        g.amplitude.data.fill_(amplitude)
        lead.end_epoch(epoch, 10 * epoch, g, last=epoch == len(amplitudes))
    rows = lead.logger.rows
    assert [("quality/cfd" in r) for r in rows] == [e in report_epochs for e in range(1, 7)]
    assert all("quality/selection_cfd" in r for r in rows)
    chosen = [r["quality/selection_cfd"] for r in rows]
    assert [r["quality/selection_cfd_ratio"] for r in rows] == pytest.approx(
        [c / judge.baseline for c in chosen])
    kept = int(np.argmin(chosen))
    assert rows[-1]["best/epoch"] == kept + 1
    # the report draws: the report epochs', then the kept weights' own when kept elsewhere
    n = len(report_epochs)
    assert reported[:n] == [amplitudes[e - 1] for e in report_epochs]
    assert reported[n:] == ([] if kept + 1 in report_epochs else [amplitudes[kept]])
    g.amplitude.data.fill_(amplitudes[kept])
    assert rows[-1]["best/quality/cfd"] == pytest.approx(score(cfg, judge, g).cfd)


def test_the_epoch_line_names_what_was_drawn_and_nothing_else():
    from learner.gan.lines import format_quality

    between = {"quality/selection_cfd": 0.31234, "quality/selection_cfd_ratio": 2.71828,
               "best/epoch": 7.0}
    assert format_quality(between) == (
        "CFD of the selection draws 0.3123 (2.72x real-vs-real) (best: epoch 7)")
    report = {"quality/conditional_acc": 1.0, "quality/cfd": 0.2, "quality/cfd_ratio": 5.0,
              "spread/real/pong": 0.018, "spread/generated/pong": 0.05,
              "games/cfd_ratio/pong": 17.5, **between}
    assert format_quality(report) == (
        "conditional acc 1  classifier Fréchet distance (CFD) 0.2  CFD / real-vs-real 5  "
        "pixel spread real/samples: pong 0.018/0.050  each game's CFD / its real-vs-real: "
        "pong 17.5  CFD of the selection draws 0.3123 (2.72x real-vs-real) (best: epoch 7)")
