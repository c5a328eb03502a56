"""n-step returns against hand-computed cases (gamma = 0.5 keeps the arithmetic exact)."""

import numpy as np
import pytest

from dqn.nstep import nstep_returns

G = 0.5
CASES = [
    # name, rewards, terminated, ends_after (record t+k+1 is `last`), return, discount, steps
    ("no end inside n=3", [1, 2, 4], [0, 0, 0], [0, 0, 0], 1 + 0.5 * 2 + 0.25 * 4, 0.125, 3),
    ("terminal at step 0", [1, 2, 4], [1, 0, 0], [1, 0, 0], 1.0, 0.0, 1),
    ("terminal at step 1", [1, 2, 4], [0, 1, 0], [0, 1, 0], 1 + 0.5 * 2, 0.0, 2),
    ("terminal at last step", [1, 2, 4], [0, 0, 1], [0, 0, 1], 1 + 0.5 * 2 + 0.25 * 4, 0.0, 3),
    ("truncated after step 1: bootstrap from the final frame", [1, 2, 4], [0, 0, 0],
     [0, 1, 0], 1 + 0.5 * 2, 0.25, 2),
    ("truncated after step 0", [3, 2, 4], [0, 0, 0], [1, 0, 0], 3.0, 0.5, 1),
    ("life-loss terminal (no episode end) at step 1", [1, 2, 4], [0, 1, 0], [0, 0, 0],
     2.0, 0.0, 2),
    ("negative rewards", [-1, -1, 1], [0, 0, 0], [0, 0, 0], -1 - 0.5 + 0.25, 0.125, 3),
    ("n=1", [7], [0], [0], 7.0, 0.5, 1),
    ("n=1 terminal", [7], [1], [1], 7.0, 0.0, 1),
]


@pytest.mark.parametrize("name,reward,term,ends,ret,discount,steps", CASES,
                         ids=[c[0] for c in CASES])
def test_nstep_case(name, reward, term, ends, ret, discount, steps):
    out = nstep_returns(np.array([reward], np.float32), np.array([term], bool),
                        np.array([ends], bool), G)
    assert out.ret[0] == pytest.approx(ret)
    assert out.discount[0] == pytest.approx(discount)
    assert out.steps[0] == steps


def test_cases_batched_together_give_the_same_answers():
    rows = [c for c in CASES if len(c[1]) == 3]
    out = nstep_returns(np.array([c[1] for c in rows], np.float32),
                        np.array([c[2] for c in rows], bool),
                        np.array([c[3] for c in rows], bool), G)
    np.testing.assert_allclose(out.ret, [c[4] for c in rows], rtol=1e-6)
    np.testing.assert_allclose(out.discount, [c[5] for c in rows], rtol=1e-6)
    np.testing.assert_array_equal(out.steps, [c[6] for c in rows])


def _loop_priorities(reward, terminated, first, last, action, q, gamma, n):
    """One record at a time, the way the maths reads."""
    steps, width = reward.shape
    out = np.full((steps, width), np.nan)
    for e in range(width):
        for t in range(steps):
            if last[t, e]:
                continue
            ret, m, done = 0.0, None, False
            for k in range(n):
                if t + k + 1 >= steps:
                    break
                ret += gamma ** k * reward[t + k, e]
                if terminated[t + k, e] or last[t + k + 1, e]:
                    m, done = k + 1, bool(terminated[t + k, e])
                    break
            else:
                m = n
            if m is None or t + m >= steps or first[t + 1:t + m + 1, e].any():
                continue
            boot = 0.0 if done else gamma ** m * q[t + m, e].max()
            out[t, e] = abs(ret + boot - q[t, e, action[t, e]])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_chunk_priorities_match_a_plain_loop(seed):
    from dqn.nstep import chunk_priorities

    rng = np.random.default_rng(seed)
    steps, width, actions, n = 40, 3, 4, 3
    terminated = rng.random((steps, width)) < 0.08
    last = np.roll(terminated, 1, axis=0) | (rng.random((steps, width)) < 0.03)
    last[0] = False
    first = np.roll(last, 1, axis=0) | (rng.random((steps, width)) < 0.02)
    reward = rng.integers(-1, 2, (steps, width)).astype(np.float32)
    action = rng.integers(0, actions, (steps, width))
    q = rng.normal(size=(steps, width, actions)).astype(np.float32)
    got = chunk_priorities(reward, terminated, first, last, action, q, 0.9, n)
    want = _loop_priorities(reward, terminated, first, last, action, q, 0.9, n)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-5, atol=1e-5)
    assert (~np.isnan(got)).sum() > steps  # the table is not all NaN
