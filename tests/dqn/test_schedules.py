import numpy as np
import pytest

from dqn.schedules import (ConstantStep, LinearDecay, SwitchAfterReturn, apex_epsilons, linear,
                           step_size)


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


@pytest.mark.parametrize("lr_end, start, end, after_return, kind, at_env_steps", [
    (None, 0, 0, None, ConstantStep, {0: 1e-3, 10**6: 1e-3}),
    (2e-4, 100, 300, None, LinearDecay, {0: 1e-3, 100: 1e-3, 200: 6e-4, 300: 2e-4, 999: 2e-4}),
    (2e-4, 0, 0, 5.0, SwitchAfterReturn, {0: 1e-3, 10**6: 1e-3}),
])
def test_the_step_size_the_config_asks_for(lr_end, start, end, after_return, kind,
                                           at_env_steps):
    schedule = step_size(1e-3, lr_end, start, end, after_return)
    assert type(schedule) is kind
    assert {t: schedule(t) for t in at_env_steps} == pytest.approx(at_env_steps)


def test_a_switch_after_a_return_is_for_good_and_survives_its_state():
    schedule = step_size(1e-3, 2e-4, 0, 0, 5.0)
    schedule.on_evaluation(4.9)
    assert schedule(0) == 1e-3
    schedule.on_evaluation(5.0)
    schedule.on_evaluation(-100.0)
    assert schedule(0) == 2e-4
    again = step_size(1e-3, 2e-4, 0, 0, 5.0)
    again.load_state_dict(schedule.state_dict())
    assert again(0) == 2e-4
