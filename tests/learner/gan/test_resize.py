"""How screens shrink to the GAN's frames: area averaging or nearest pixels."""

from pathlib import Path

import numpy as np

from learner.gan.data import FramePlan, cache_path, resize


def test_nearest_keeps_a_small_object_in_its_own_colour_where_area_blends_it():
    background, ball = (144, 72, 17), (236, 236, 236)        # pong's field and ball
    screen = np.empty((210, 160, 3), np.uint8)
    screen[:] = background
    screen[120:124, 101:103] = ball                          # 2 x 4 pixels, as in pong
    area, nearest = resize(screen, 64, "area"), resize(screen, 64, "nearest")
    assert {tuple(c) for c in nearest.reshape(-1, 3)} == {background, ball}  # the palette
    assert (nearest == ball).all(-1).sum() == 1              # one pixel, full contrast
    assert not (area == ball).all(-1).any()                  # a blend with the field
    assert (area != background).any(-1).sum() >= 1
    np.testing.assert_array_equal(resize(screen, 64), area)  # area stays the default


def test_salient_keeps_every_small_object_at_full_contrast_and_flat_areas_as_they_are():
    background, ball = (144, 72, 17), (236, 236, 236)
    rng = np.random.default_rng(0)
    nearest_dropped = 0
    for _ in range(20):                                      # the ball anywhere: never lost
        screen = np.empty((210, 160, 3), np.uint8)
        screen[:] = background
        y, x = rng.integers(0, 206), rng.integers(0, 158)
        screen[y:y + 4, x:x + 2] = ball
        salient = resize(screen, 64, "salient")
        assert salient.shape == (64, 64, 3) and salient.dtype == np.uint8
        assert {tuple(c) for c in salient.reshape(-1, 3)} == {background, ball}
        at = np.argwhere((salient == ball).all(-1))          # 1 to 4 pixels where it is
        assert 1 <= len(at) <= 4
        assert (abs(at[:, 0] * 210 / 64 - y) < 5).all() and (abs(at[:, 1] * 2.5 - x) < 3).all()
        nearest_dropped += not (resize(screen, 64, "nearest") == ball).all(-1).any()
    assert nearest_dropped > 0                               # why salient exists
    flat = np.full((210, 160, 3), 90, np.uint8)
    np.testing.assert_array_equal(resize(flat, 64, "salient"), np.full((64, 64, 3), 90))


def test_the_resize_method_is_part_of_the_cache_key_and_area_keeps_the_old_key():
    plan = FramePlan(("pong",), 6, 3, 16, seed=4)
    area, nearest, salient = (cache_path(plan._replace(resize=m), Path("cache"))
                              for m in ("area", "nearest", "salient"))
    assert len({area, nearest, salient}) == 3
    assert area.name == "frames-pong-16px-a7052e484d38.npz"  # as before `resize` existed
