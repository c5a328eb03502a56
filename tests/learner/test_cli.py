"""Smoke tests of each entry point, resume, W&B offline, and one-line errors."""

import json
import subprocess
import sys

import pytest
import torch

from dqn.checkpoint import DistributedCheckpoint, SerialCheckpoint
from dqn.metrics import STEP_KEY
from dqn.plots import best_evaluation, read_metrics
from learner.cli import main

TINY_CARTPOLE = ["run.total_env_steps=2000", "replay.learning_starts_env_steps=500",
                 "run.eval_every_env_steps=1000", "run.eval_episodes=2",
                 "run.log_every_env_steps=500"]


def test_train_cartpole_then_resume_with_the_same_run_name(run_dir, capsys):
    args = ["train", "--preset", "cartpole", "--no-progress", "--serial", f"run.out_dir={run_dir}",
            "run.name=resume-me"]
    assert main(args + TINY_CARTPOLE) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # one update per 2 env steps after 500 env steps of warm-up
    assert first["env_steps"] == 2000 and first["learner_updates"] == (2000 - 500) // 2
    ckpt = torch.load(first["checkpoint"], weights_only=False)
    assert ckpt["env_steps"] == 2000
    # best.pt: the weights of the best of the two evaluations (the later one on a tie)
    best = torch.load(run_dir / "resume-me" / "best.pt", weights_only=False)
    means = [e["mean_return"] for e in ckpt["evaluations"]]
    assert len(means) == 2 and best["eval_mean_return"] == max(means)
    assert best["env_steps"] == [e["env_steps"] for e in ckpt["evaluations"]
                                 if e["mean_return"] == max(means)][-1]
    more = [a.replace("2000", "3000") if a.startswith("run.total") else a for a in TINY_CARTPOLE]
    assert main(args + more) == 0
    out, err = capsys.readouterr()
    assert "resuming run 'resume-me' at 2,000 env steps" in err   # stdout: the result alone
    second = json.loads(out)
    assert second["env_steps"] == 3000
    # the learner's counter carried on; replay refilled for 500 env steps first
    assert second["learner_updates"] == first["learner_updates"] + (3000 - 2000 - 500) // 2
    lines = (run_dir / "resume-me" / "metrics.jsonl").read_text().splitlines()
    assert any("losses/td_loss" in json.loads(line) for line in lines)


def test_the_serial_trainer_switches_its_step_at_the_first_evaluation_past_the_threshold(
        run_dir, capsys):
    # CartPole scores at least 8 an episode: the first evaluation (1,000 env steps) passes 1
    args = ["train", "--preset", "cartpole", "--no-progress", "--serial", f"run.out_dir={run_dir}",
            "run.name=lr-switch", "agent.lr_end=0.0001", "agent.lr_end_after_eval_return=1"]
    assert main(args + TINY_CARTPOLE) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ckpt = torch.load(result["checkpoint"], weights_only=False)
    assert ckpt["learner"]["step_size"] == {"switched": True}
    assert ckpt["learner"]["optimizer"]["param_groups"][0]["lr"] == 1e-4
    logged = {row["charts/env_steps"]: row["charts/learning_rate"]
              for row in map(json.loads, (run_dir / "lr-switch" / "metrics.jsonl")
                             .read_text().splitlines()) if "charts/learning_rate" in row}
    assert logged[1000] == 1e-3 and logged[1500] == 1e-4 and logged[2000] == 1e-4


def test_pong_runs_end_to_end_through_the_cnn(run_dir, capsys):
    args = ["train", "--preset", "laptop", "--no-progress", "--serial", f"run.out_dir={run_dir}",
            "run.name=pong-smoke", "env.num_envs=4", "run.total_env_steps=3000",
            "replay.learning_starts_env_steps=1000", "replay.capacity_transitions=20000",
            "replay.prioritized=true", "network.dueling=true",
            "run.eval_every_env_steps=3000", "run.eval_episodes=1",
            "run.log_every_env_steps=1000"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["learner_updates"] == (3000 - 1000) // 4
    assert len(result["evaluations"]) == 1 and -21 <= result["evaluations"][0] <= 21
    rows = [json.loads(x) for x in (run_dir / "pong-smoke" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["global/env_frames"] == 3000 * 4
    # dormant units logged per layer of the dueling 2013 network (fc2: the value stream)
    logged = [row for row in rows if "learner/dormant_units" in row]
    assert logged and all(0.0 <= logged[-1][f"learner/dormant_units_{layer}"] <= 1.0
                          for layer in ("conv1", "conv2", "fc1", "fc2"))
    state = torch.load(result["checkpoint"], weights_only=False)
    # the laptop preset trains the 2013 DQN network: 16 filters of 8x8 over the 4-frame stack
    assert state["learner"]["online"]["torso.0.weight"].shape == (16, 4, 8, 8)


def test_wandb_offline_run_is_written(run_dir, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["train", "--preset", "cartpole", "--no-progress", "--serial", f"run.out_dir={run_dir}",
            "run.name=wb", *TINY_CARTPOLE]
    assert main(args) == 0
    runs = list((run_dir / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "learner.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,fragment", [
    (["train", "replay.capacity_transitions=abc"], "replay.capacity_transitions = 'abc'"),
    (["train", "env.id=pongg"], "did you mean 'pong'"),
    (["train", "--preset", "nope"], "preset 'nope' not found"),
    (["bench", "env", "--game", "tetris_2000"], "env.id = 'tetris_2000'"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, fragment):
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert fragment in proc.stderr


def test_corrupt_checkpoint_is_reported_and_left_untouched(run_dir):
    ckpt = run_dir / "broken" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    proc = _cli("train", "--serial", "--preset", "cartpole", f"run.out_dir={run_dir}",
                "run.name=broken")
    assert proc.returncode == 2 and "is unreadable or corrupt" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert ckpt.read_bytes() == b"not a checkpoint"


def test_resuming_a_run_of_another_game_is_refused(run_dir, capsys):
    base = ["train", "--no-progress", "--serial", f"run.out_dir={run_dir}", "run.name=mixed"]
    assert main([*base, "--preset", "cartpole", *TINY_CARTPOLE[:2]]) == 0
    assert main([*base, "--preset", "cartpole", "env.id=Acrobot-v1"]) == 2
    assert "was trained on 'CartPole-v1', not 'Acrobot-v1'" in capsys.readouterr().err


def test_serial_refuses_a_distributed_checkpoint(run_dir, capsys):
    base = ["train", "--no-progress", "--serial", "--preset", "cartpole",
            f"run.out_dir={run_dir}", "run.name=other", *TINY_CARTPOLE[:2]]
    assert main(base) == 0
    ckpt = run_dir / "other" / "checkpoint.pt"
    serial = SerialCheckpoint.load(ckpt)
    DistributedCheckpoint(serial.config, serial.learner, serial.env_steps, episodes=3,
                          collector_restarts=0).save(ckpt)
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "was written by the distributed trainer, not the single-process trainer" in err
    assert err.count("\n") == 1


def test_bench_replay_prints_json_with_ratios():
    proc = _cli("bench", "replay", "--seconds", "0.2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["bytes_per_transition_1M"] <= 7300
    assert 0 < report["uniform_batch32_ratio_to_bare_gather"]
    assert report["prioritized_batch512_batches_per_s"] > 0
    assert 0 < report["save_full_pause_ms"] and 0 < report["save_full_ratio_to_bare_write"]
    assert report["save_incremental_10k_write_s"] < report["save_full_write_s"]


def test_bench_update_times_the_same_update_in_both_layouts():
    import torch

    from dqn.config import load_config
    from dqn.learning import DQNLearner
    from learner.bench.system import plain_learner, synthetic_batch

    cfg = load_config("laptop")
    learners = []
    for make_plain in (False, True):
        torch.manual_seed(0)
        learner = DQNLearner(cfg, (4, 84, 84), 6, torch.device("cpu"))
        learners.append(plain_learner(learner) if make_plain else learner)
    ours, plain = learners
    assert plain.online.torso[0].weight.is_contiguous()
    assert not ours.online.torso[0].weight.is_contiguous()
    assert ours.optimizer.defaults["fused"] and not plain.optimizer.defaults["fused"]
    batch = synthetic_batch(32, (4, 84, 84), 6)
    for _ in range(3):  # the baseline is the same maths: the same losses, step by step
        a, b = ours.update(batch), plain.update(batch)
        assert a.td_loss == pytest.approx(b.td_loss, rel=1e-4)
    # and the same weights after them: each Adam step moves a weight by ~lr = 1e-4, so a
    # gradient applied to the wrong elements (a layout mix-up) would show here
    for (name, x), y in zip(ours.online.state_dict().items(), plain.online.state_dict().values()):
        assert torch.allclose(x, y, rtol=0, atol=1e-6), name

    proc = _cli("bench", "update", "--seconds", "1", "--preset", "laptop")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["network"] == "nips2013"
    assert report["updates_per_s"] > 0 and report["plain_updates_per_s"] > 0
    assert report["cpu_ms_per_update"] > 0 and report["cpu_ratio"] > 0


@pytest.mark.parametrize("what,fleet", [
    ("collect", ["ray.num_collectors=1"]), ("system", ["ray.num_collectors=1"]),
    ("learner", ["ray.num_collectors=2", "ray.num_replay_shards=2"])])
def test_system_benchmarks_run_and_report_ratios(what, fleet):
    proc = _cli("bench", what, "--seconds", "1", "--preset", "cartpole", "env.num_envs=2",
                "replay.learning_starts_env_steps=300", *fleet)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)                     # stdout: the report alone
    ratios = [v for k, v in report.items() if k.endswith("ratio")]
    assert ratios and all(r > 0 for r in ratios)
    if what == "learner":   # both shards filled before the collectors stopped: a starved
        assert report["replay_shards"] == 2      # one would answer every other request
        assert report["feed_batches_per_s"] > 10  # after its 1 s timeout (<= 2 batches/s)


def test_bench_overhead_reports_the_plumbing_ratios_on_cartpole():
    proc = _cli("bench", "overhead", "--seconds", "1", "env.num_envs=2",
                "replay.learning_starts_env_steps=300", "ray.num_collectors=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["preset"] == "cartpole"
    assert 0 < report["learner_ratio"] and 0 < report["collect_ratio"]
    assert report["learner"]["game"] == report["collect"]["game"] == "CartPole-v1"


def test_plot_draws_the_learning_curve_of_a_run(run_dir, capsys):
    import imageio.v3 as iio

    args = ["train", "--preset", "cartpole", "--no-progress", "--serial",
            f"run.out_dir={run_dir}", "run.name=curve", *TINY_CARTPOLE]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["plot", str(run_dir / "curve"), "--out", str(run_dir / "c.png")]) == 0
    assert iio.imread(run_dir / "c.png").shape[:2] == (500, 800)
    # the star marks the evaluation whose weights the trainer kept as best.pt
    best = torch.load(run_dir / "curve" / "best.pt", weights_only=False)
    assert best_evaluation(read_metrics(run_dir / "curve"))[1] == best["eval_mean_return"]
    assert best_evaluation([{STEP_KEY: 4, "eval/mean_return": 1.0}, {STEP_KEY: 12, "x": 3},
                            {STEP_KEY: 8, "eval/mean_return": 1.0},
                            {STEP_KEY: 16, "eval/mean_return": 0.5}]) == (8, 1.0)
    assert main(["plot", str(run_dir / "nothing-here")]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_an_unreachable_address_is_one_line_naming_it_within_30_seconds():
    import socket
    import time

    with socket.socket() as sock:           # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    proc = _cli("train", "--preset", "cartpole", "--address", address)
    assert time.monotonic() - start < 30
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"error: no Ray cluster at '{address}'")
