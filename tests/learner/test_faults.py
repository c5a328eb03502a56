"""A CartPole run whose actors are killed every few seconds, and its driver once: it
reaches its env-step target, counts every death it saw, and its best weights solve
CartPole."""

import json
import subprocess
import sys

import pytest

from dqn.errors import UserError
from learner.faults import fault_run

RUN = ["run.total_env_steps=50000", "run.stop_at_eval_return=null",
       "run.checkpoint_every_env_steps=2000", "run.eval_every_env_steps=2500",
       "run.log_every_env_steps=250", "ray.num_collectors=1", "ray.chunk_env_steps=8",
       "ray.publish_every_updates=50"]


@pytest.mark.slow
def test_a_run_under_faults_reaches_its_target_and_still_solves_cartpole(run_dir):
    report = fault_run("cartpole", [f"run.out_dir={run_dir}", "run.name=chaos", *RUN],
                       every_s=4.0, kills=8, seed=0)
    assert report["env_steps"] >= 50_000
    injected = report["faults_injected"]
    assert sum(injected.values()) == 9 and injected["driver"] == 1
    assert all(injected[kind] >= 1 for kind in ("collector", "shard", "learner", "evaluator"))
    driver = next(f for f in report["faults"] if f["kind"] == "driver")
    assert driver["left_behind"] == 0                 # its embedded Ray went with it
    counted = report["deaths_counted_by_the_run"]
    for kind in ("collector", "shard", "learner"):    # an idle evaluator may die unseen
        assert counted[kind] >= injected[kind], (kind, report)
    assert report["best_in_training_evaluation"] >= 475
    assert report["best_weights_mean_return"] is not None
    log = (run_dir / "chaos" / "faults.log").read_text()
    assert "Traceback" not in log


def test_a_fault_run_of_an_existing_run_or_bad_numbers_is_one_line(run_dir):
    (run_dir / "taken").mkdir(parents=True)
    (run_dir / "taken" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(UserError, match="exists already"):
        fault_run("cartpole", [f"run.out_dir={run_dir}", "run.name=taken"], 10.0, 8)
    proc = subprocess.run([sys.executable, "-m", "learner.cli", "faults", "--kills", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: --kills -1 must be 0 (a run without faults) or more\n"
    proc = subprocess.run([sys.executable, "-m", "learner.cli", "faults", "env.id=pongg"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not a game" in proc.stderr
    assert not json.dumps(proc.stdout).strip('"')
