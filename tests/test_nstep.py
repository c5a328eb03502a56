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
