"""`bench rllib` end to end on a tiny budget: both sides run, and the replay ratio is
equal by count (RLlib's training_intensity correction holds)."""

import pytest

from learner.cli import main
from learner.bench.rllib import bench_rllib


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
    assert report["settings"]["our_learner"] == "1 torch thread(s), float32"


def test_the_settings_name_our_learners_threads_and_precision():
    from learner.bench.rllib import bench_config, settings

    described = settings(bench_config("laptop", ["agent.precision=bfloat16",
                                                 "ray.learner_cpus=2"]))
    assert described["our_learner"] == ("2 torch thread(s), bfloat16 autocast passes, "
                                        "float32 weights")


def test_bench_rllib_refuses_a_non_atari_preset(capsys):
    assert main(["bench", "rllib", "--preset", "cartpole"]) == 2
    assert "is not an ALE game" in capsys.readouterr().err


def test_a_learning_rate_decay_reaches_rllib_as_its_own_schedule():
    from ray.rllib.utils.schedules.scheduler import Scheduler

    from dqn.config import load_config
    from learner.bench.rllib_side import lr_schedule

    assert lr_schedule(load_config("laptop", ["agent.lr_end=null"])) == 2.5e-4
    assert lr_schedule(load_config("laptop", ["agent.lr_end_after_eval_return=0",
                                               "agent.lr_decay_start_env_steps=0",
                                               "agent.lr_decay_end_env_steps=0"])) == 2.5e-4
    decayed = lr_schedule(load_config("laptop", [
        "agent.learning_rate=1e-4", "agent.lr_end=2e-5", "agent.lr_decay_start_env_steps=600000",
        "agent.lr_decay_end_env_steps=1000000"]))
    assert decayed == [[0, 1e-4], [600_000, 1e-4], [1_000_000, 2e-5]]
    Scheduler.validate(fixed_value_or_schedule=decayed, setting_name="lr",
                       description="learning rate")
    scheduler = Scheduler(decayed)
    assert scheduler.update(800_000) == pytest.approx(6e-5)
    assert scheduler.update(2_000_000) == pytest.approx(2e-5)
