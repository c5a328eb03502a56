import numpy as np
import pytest

from dqn.sumtree import SumTree


def test_totals_and_find_follow_cumulative_sums():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    assert tree.total == pytest.approx(10.0)
    # cumulative intervals: [0,1) -> 0, [1,3) -> 2, [3,6) -> 3, [6,10) -> 4; leaf 1 is empty
    found = tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99]))
    assert found.tolist() == [0, 0, 2, 2, 3, 3, 4, 4]


def test_set_updates_ancestors_and_repeated_index_keeps_last_value():
    tree = SumTree(1000)
    tree.set(np.array([7, 7, 999]), np.array([1.0, 5.0, 2.0]))
    assert tree.total == pytest.approx(7.0)
    tree.set(np.array([999]), np.array([0.0]))
    assert tree.total == pytest.approx(5.0)
    assert tree.get(np.array([7]))[0] == 5.0


def test_sample_never_returns_empty_leaves():
    tree = SumTree(100)
    tree.set(np.array([3, 50, 99]), np.array([1e-9, 1.0, 1e-9]))
    index = tree.sample(10_000, np.random.default_rng(0))
    assert set(index.tolist()) <= {3, 50, 99}


def test_sample_of_all_zero_tree_is_an_error():
    with pytest.raises(ValueError):
        SumTree(4).sample(2, np.random.default_rng(0))
