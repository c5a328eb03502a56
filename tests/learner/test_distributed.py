"""The distributed trainer on a local 2-CPU Ray: end to end on Pong, resume, and a fault."""

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
import ray
import torch

from actors.evaluator import EvalReport
from dqn.checkpoint import best_return
from dqn.config import load_config
from dqn.networks import QNetwork
from learner.driver import DistributedTrainer
from learner.evaluate import load_agent


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def pong(run_dir, *extra):
    return load_config("laptop", [
        f"run.out_dir={run_dir}", "run.name=pong-dist", "env.num_envs=4",
        "replay.capacity_transitions=20000", "replay.learning_starts_env_steps=1000",
        "replay.prioritized=true", "agent.update_every_env_steps=16",
        "ray.chunk_env_steps=16", "ray.publish_every_updates=10",
        "run.log_every_env_steps=256", *extra])


def test_pong_end_to_end_with_wandb_offline_then_resume(local_ray, run_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    trainer = DistributedTrainer(pong(run_dir, "run.total_env_steps=2500"), progress=False)
    result = trainer.run()
    assert result.env_steps >= 2500
    assert result.updates > 20
    assert result.weights_version > 1
    assert min(trainer.collector_version) > 1          # collectors picked up newer weights
    state = torch.load(result.checkpoint, weights_only=False)
    assert state["env_steps"] == result.env_steps
    assert state["learner"]["updates"] == result.updates
    rows = [json.loads(line) for line in
            (run_dir / "pong-dist" / "metrics.jsonl").read_text().splitlines()]
    assert any("losses/td_loss" in row for row in rows)
    dormant = [row for row in rows if "learner/dormant_units" in row]  # the 2013 network's
    assert dormant and all(0.0 <= row[f"learner/dormant_units_{layer}"] <= 1.0
                           for row in dormant for layer in ("conv1", "conv2", "fc1"))
    assert max(row.get("replay/size", 0) for row in rows) > 1000
    logged = [row for row in rows if "charts/env_steps" in row]
    assert all(row["global/env_frames"] == 4 * row["charts/env_steps"] for row in logged)
    runs = list((run_dir / "pong-dist" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0

    again = DistributedTrainer(pong(run_dir, "run.total_env_steps=3500"), progress=False)
    assert (again.env_steps, again.updates) == (result.env_steps, result.updates)
    resumed = again.run()
    assert resumed.env_steps >= 3500 and resumed.updates > result.updates


def test_resuming_with_another_network_shape_is_one_clear_error(local_ray, run_dir):
    from dqn.errors import UserError

    args = [f"run.out_dir={run_dir}", "run.name=shape", "run.total_env_steps=256",
            "replay.learning_starts_env_steps=128", "env.num_envs=2", "ray.chunk_env_steps=16"]
    DistributedTrainer(load_config("cartpole", args), progress=False).run()
    with pytest.raises(UserError, match="holds a network of another shape"):
        DistributedTrainer(load_config("cartpole", [*args, "network.dueling=true"]),
                           progress=False)


def test_killed_collector_is_restarted_and_resynced(local_ray, run_dir):
    cfg = load_config("cartpole", [f"run.out_dir={run_dir}", "run.name=fault",
                                   "env.num_envs=2", "ray.chunk_env_steps=16",
                                   "ray.publish_every_updates=5",
                                   "replay.learning_starts_env_steps=200",
                                   "run.log_every_env_steps=100"])
    trainer = DistributedTrainer(cfg, progress=False)
    try:
        # Ask before the collector gets busy: a call to it waits behind its chunk, and
        # its chunk waits for the learner, which waits for this loop to step the driver.
        victim, _ = ray.get(trainer.collectors[0].where.remote())
        # The evaluator yields the CPU to the hot path: the lowest priority, below a collector.
        evaluator_nice, collector_nice = ray.get(
            [actor.__ray_call__.remote(lambda _: os.nice(0))
             for actor in (trainer.evaluator, trainer.collectors[0])])
        assert evaluator_nice == cfg.ray.evaluator_nice == 19 >= collector_nice
        deadline = time.time() + 120
        while trainer.updates < 10 and time.time() < deadline:
            trainer.step()
        os.kill(victim, signal.SIGKILL)
        steps, updates = trainer.env_steps, trainer.updates
        while (trainer.restarts == 0 or trainer.collector_version[0] < 1
               or trainer.updates <= updates) and time.time() < deadline:
            trainer.step()
        assert trainer.restarts == 1
        assert trainer.collector_version[0] >= 1        # resynced before it acted again
        successor = trainer.collectors[0].where.remote()
        while not ray.wait([successor], timeout=0)[0] and time.time() < deadline:
            trainer.step()
        assert ray.get(successor)[0] != victim
        assert trainer.updates > updates and trainer.env_steps > steps
    finally:
        trainer.close()
    rows = [json.loads(line) for line in
            (run_dir / "fault" / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("actors/restarts") == 1 for row in rows)


def test_a_learner_gone_at_shutdown_keeps_the_last_checkpoint(local_ray, run_dir, capsys):
    """A SIGTERM to the whole process group (`timeout`) stops Ray's processes too: close
    then says so in one line and leaves the periodic checkpoint as it was."""
    cfg = load_config("cartpole", [f"run.out_dir={run_dir}", "run.name=gone", "env.num_envs=2",
                                   "ray.chunk_env_steps=16", "replay.learning_starts_env_steps=200"])
    trainer = DistributedTrainer(cfg, progress=False)
    deadline = time.time() + 120
    while trainer.updates < 5 and time.time() < deadline:
        trainer.step()
    trainer.save()
    saved = trainer.env_steps
    while trainer.env_steps == saved and time.time() < deadline:
        trainer.step()
    ray.kill(trainer.learner, no_restart=True)
    trainer.close()
    err = capsys.readouterr().err
    assert "no final checkpoint: the learner actor was gone" in err
    assert f"from {saved:,} env steps is kept" in err
    state = torch.load(run_dir / "gone" / "checkpoint.pt", weights_only=False)
    assert state["env_steps"] == saved < trainer.env_steps


def test_sigterm_writes_a_final_checkpoint_and_exits_cleanly(run_dir):
    """`raydqn train` in its own process (embedded Ray), stopped with SIGTERM mid-run."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "learner.cli", "train", "--no-progress", "--preset", "cartpole",
         f"run.out_dir={run_dir}", "run.name=term", "run.total_env_steps=10000000",
         "run.log_every_env_steps=200", "replay.learning_starts_env_steps=200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "term" / "metrics.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and not (metrics.exists() and any(
            "losses/td_loss" in line for line in metrics.read_text().splitlines())):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    state = torch.load(run_dir / "term" / "checkpoint.pt", weights_only=False)
    assert 0 < state["env_steps"] == result["env_steps"] < 10_000_000
    assert state["learner"]["updates"] == result["learner_updates"] > 0


class _Log:
    def log(self, step, metrics):
        pass


def _shell(cfg) -> DistributedTrainer:
    """A trainer without actors, enough to take evaluation reports."""
    trainer = object.__new__(DistributedTrainer)
    trainer.cfg, trainer.logger, trainer.evaluations = cfg, _Log(), []
    trainer.run_dir = Path(cfg.run.out_dir) / cfg.run.name
    trainer.best_path = trainer.run_dir / "best.pt"
    trainer.best_return = best_return(trainer.best_path)
    trainer.target_reached = False
    trainer.learner = _Learner()
    return trainer


class _Learner:
    """Records what the driver tells the learner actor about evaluations."""

    def __init__(self):
        self.told = []
        self.on_evaluation = self

    def remote(self, mean_return):
        self.told.append(mean_return)


def test_the_best_evaluation_keeps_its_weights_as_best_pt(local_ray, run_dir):
    cfg = pong(run_dir, "run.name=best")
    net = QNetwork((4, 84, 84), 6, cfg.network)
    trainer = _shell(cfg)
    assert trainer.best_return == -math.inf
    for version, (env_steps, returns) in enumerate([(1000, [-21.0, -20.0]), (2000, [-15.0]),
                                                    (3000, [-19.0])]):
        with torch.no_grad():
            net.out.bias.fill_(float(version))      # tells the versions apart
        trainer._eval_weights = ray.put({k: v.clone() for k, v in net.state_dict().items()})
        trainer._on_evaluation(EvalReport(env_steps, version, returns, [800] * len(returns)))
    best = torch.load(run_dir / "best" / "best.pt", weights_only=False)
    # the second evaluation (-15) was the best; the third (-19) did not replace it
    assert (best["env_steps"], best["weights_version"], best["eval_mean_return"]) == (2000, 1, -15.0)
    assert torch.all(best["learner"]["online"]["out.bias"] == 1.0)
    _, loaded = load_agent(run_dir / "best" / "best.pt", "pong")   # what `evaluate` reads
    assert torch.all(loaded.state_dict()["out.bias"] == 1.0)
    assert trainer.learner.told == [-20.5, -15.0, -19.0]  # each mean, for the step switch
    assert _shell(cfg).best_return == -15.0                        # a resumed run keeps it


def _cartpole(run_dir, name, *extra):
    return load_config("cartpole", [f"run.out_dir={run_dir}", f"run.name={name}",
                                    "env.num_envs=2", "ray.chunk_env_steps=16",
                                    "ray.publish_every_updates=5",
                                    "replay.learning_starts_env_steps=400",
                                    "run.log_every_env_steps=64", *extra])


def test_a_resumed_run_restores_its_replay_and_updates_without_refilling(local_ray, run_dir):
    first = DistributedTrainer(_cartpole(run_dir, "keep", "run.total_env_steps=600"),
                               progress=False).run()
    saved = json.loads((run_dir / "keep" / "replay" / "shard-0" / "state.json").read_text())
    assert 400 < sum(saved["written"]) <= first.env_steps  # chunks still in flight are not
    assert saved["extra"]["inserted"] == sum(saved["written"])
    again = DistributedTrainer(_cartpole(run_dir, "keep", "run.total_env_steps=900"),
                               progress=False)
    try:
        stats = ray.get(again.shards[0].stats.remote())
        assert stats.restored > 0 and stats.size == stats.restored
        assert stats.ready and stats.inserted == saved["extra"]["inserted"]  # no refill
        steps, updates, deadline = again.env_steps, again.updates, time.time() + 60
        while again.updates == updates and time.time() < deadline:
            again.step()
        assert again.updates > updates                 # learning goes on at once, long
        assert again.env_steps - steps < 400           # before 400 new env steps refill it
    finally:
        again.close()
    off = DistributedTrainer(_cartpole(run_dir, "keep", "run.total_env_steps=900",
                                       "run.checkpoint_replay=false"), progress=False)
    try:
        assert ray.get(off.shards[0].stats.remote()).size == 0       # the opt-out
    finally:
        off.close()


def test_a_killed_replay_shard_restarts_from_its_last_save_and_the_run_goes_on(
        local_ray, run_dir, capsys):
    trainer = DistributedTrainer(_cartpole(run_dir, "shard"), progress=False)
    try:
        deadline = time.time() + 120
        while trainer.updates < 10 and time.time() < deadline:
            trainer.step()
        trainer.save()
        assert ray.get(trainer.shards[0].replay_saved.remote(30)) is None
        pid = trainer.replay_stats()[0].pid
        updates = trainer.updates
        os.kill(pid, signal.SIGKILL)
        while ((trainer.replay_restarts == 0 or trainer.updates < updates + 20)
               and time.time() < deadline):
            trainer.step()
        assert trainer.replay_restarts == 1 and trainer.restarts == 0  # collectors lived on
        assert trainer.replay_stats()[0].restored > 0
        assert trainer.updates >= updates + 20
    finally:
        trainer.close()
    assert "replay shard 0 was restarted by Ray" in capsys.readouterr().err
    rows = [json.loads(line) for line in
            (run_dir / "shard" / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("replay/restarts") == 1 for row in rows)


def test_a_killed_learner_restarts_from_the_last_checkpoint_and_the_run_goes_on(
        local_ray, run_dir, capsys):
    trainer = DistributedTrainer(_cartpole(run_dir, "learner"), progress=False)
    try:
        deadline = time.time() + 150
        while trainer.updates < 20 and time.time() < deadline:
            trainer.step()
        trainer.save()
        saved_updates, version = trainer.updates, trainer.weights_version
        while trainer.updates < saved_updates + 10 and time.time() < deadline:
            trainer.step()
        pid, killed_at = ray.get(trainer.learner.where.remote())[0], trainer.updates
        os.kill(pid, signal.SIGKILL)
        while ((trainer.learner_restarts == 0 or trainer.updates <= killed_at)
               and time.time() < deadline):
            trainer.step()
        assert trainer.learner_restarts == 1 and trainer.restarts == 0  # collectors lived on
        assert trainer.updates > killed_at
        assert ray.get(trainer.learner.where.remote())[0] != pid
        assert trainer.weights_version > version              # versions never go back
        while min(trainer.collector_version) <= version and time.time() < deadline:
            trainer.step()
        assert min(trainer.collector_version) > version        # the new weights reached them
    finally:
        trainer.close()
    err = capsys.readouterr().err
    assert "the learner died" in err and "Traceback" not in err
    rows = [json.loads(line) for line in
            (run_dir / "learner" / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("learner/restarts") == 1 for row in rows)
