"""How screens shrink to the GAN's frames: area averaging or nearest pixels."""

from pathlib import Path

import numpy as np

from dqn.frames import FramePlan, cache_path, resize


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


def test_the_resize_method_is_part_of_the_cache_key_and_area_keeps_the_old_key():
    plan = FramePlan(("pong",), 6, 3, 16, seed=4)
    area, nearest = (cache_path(plan._replace(resize=m), Path("cache"))
                     for m in ("area", "nearest"))
    assert area != nearest
    assert area.name == "frames-pong-16px-a7052e484d38.npz"  # as before `resize` existed
