"""A slow, loop-by-loop reference of FrameReplay's rules, to check the vectorized code."""

from __future__ import annotations

import numpy as np


def reference_valid(hist: dict, g: int, written: int, per_stream: int, stack: int, n: int):
    """Is record g live? `hist` maps field -> list of every record ever written."""
    if g < max(0, written - per_stream + stack - 1) or g >= written or hist["last"][g]:
        return False
    m = reference_window(hist, g, n, written)[2]
    if m is None or g + m >= written:
        return False
    return not any(hist["first"][g + k] for k in range(1, m + 1))


def reference_window(hist: dict, g: int, n: int, written: int, gamma: float = 0.9):
    ret, m = 0.0, None
    for k in range(n):
        if g + k + 1 >= written:
            return ret, None, None
        ret += gamma ** k * hist["reward"][g + k]
        if hist["terminated"][g + k]:
            return ret, 0.0, k + 1
        if hist["last"][g + k + 1]:
            return ret, gamma ** (k + 1), k + 1
    m = n
    return ret, gamma ** n, m


def reference_stack(hist: dict, g: int, stack: int) -> list[int]:
    """Frame ids, oldest first; 0 for padding before the episode's first frame."""
    ids, crossed = [], False
    for back in range(stack):
        pos = g - back
        ids.append(0 if crossed or pos < 0 else hist["frame_id"][pos])
        if pos >= 0 and hist["first"][pos]:
            crossed = True
    return ids[::-1]
