import numpy as np
import pytest

from dqn.schedules import apex_epsilons, linear


@pytest.mark.parametrize("t,expected", [(-5, 1.0), (0, 1.0), (50, 0.55), (100, 0.1), (10**6, 0.1)])
def test_linear(t, expected):
    assert linear(1.0, 0.1, 100, t) == pytest.approx(expected)


def test_apex_epsilons_match_the_paper():
    eps = apex_epsilons(8, 0.4, 7.0)
    assert eps[0] == pytest.approx(0.4)
    assert eps[-1] == pytest.approx(0.4 ** 8)
    assert eps[3] == pytest.approx(0.4 ** (1 + 7 * 3 / 7))
    assert np.all(np.diff(eps) < 0)
    assert apex_epsilons(1).tolist() == [0.4]
