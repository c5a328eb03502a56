"""`bench rllib` end to end on a tiny budget: both sides run, and the replay ratio is
equal by count (RLlib's training_intensity correction holds)."""

import pytest

from learner.cli import main
from learner.rllib_bench import bench_rllib


def test_both_sides_run_at_the_same_counted_replay_ratio():
    report = bench_rllib("laptop", ["env.num_envs=2", "replay.capacity_transitions=2000",
                                    "replay.learning_starts_env_steps=100"], seconds=15)
    ours, rllib = report["ours"], report["rllib"]
    for side in (ours, rllib):
        assert side["env_steps"] > 100 and side["learner_updates"] > 0
        assert side["peak_pss_mb"] > 100
        assert side["replay_bytes_per_transition"] > 0
        assert side["replay_transitions_at_end"] > 100
    assert ours["replay_transitions_at_end"] <= 2000   # capacity, summed over shards
    # RLlib: one counted update per 4 sampled env steps once learning runs, and its
    # "trained" counter is batch size x updates (transitions replayed, not env steps).
    assert rllib["learning_env_steps_per_update"] == pytest.approx(4.0, rel=0.2)
    counters = rllib["rllib_counters"]
    assert counters["num_env_steps_trained_lifetime"] == 32 * rllib["learner_updates"]
    # RLlib keeps stacked float frames; we keep one uint8 frame per transition.
    assert rllib["replay_bytes_per_transition"] > 10 * ours["replay_bytes_per_transition"]
    assert report["settings"]["env_steps_per_update"] == 4


def test_bench_rllib_refuses_a_non_atari_preset(capsys):
    assert main(["bench", "rllib", "--preset", "cartpole"]) == 2
    assert "is not an ALE game" in capsys.readouterr().err
