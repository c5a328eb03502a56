"""Human-normalized scores against the reference table, by hand."""

import pytest

from dqn.scores import human_normalized, reference_scores, summarize


def test_the_table_has_the_55_games_of_the_papers():
    table = reference_scores()
    assert len(table) == 55
    assert table["pong"] == (-20.7, 14.6)


@pytest.mark.parametrize("game,score,expected", [
    ("pong", -20.7, 0.0),                       # random play
    ("pong", 14.6, 1.0),                        # human play
    ("pong", 21.0, (21.0 + 20.7) / (14.6 + 20.7)),
    ("ms_pacman", 307.3, 0.0),                  # ALE's snake_case finds 'mspacman'
    ("breakout", 30.5, 1.0),
])
def test_human_normalized(game, score, expected):
    assert human_normalized(game, score) == pytest.approx(expected)


def test_games_outside_the_table_have_no_hns():
    assert human_normalized("CartPole-v1", 500.0) is None


def test_summary_takes_median_and_mean_of_known_games():
    assert summarize([0.5, None, 2.0, 1.0]) == {"median_hns": 1.0, "mean_hns": 3.5 / 3,
                                               "games_with_reference": 3}
