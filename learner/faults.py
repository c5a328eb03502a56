"""`raydqn faults`: a training run under fire, to show what it survives.

The run is the ordinary `raydqn train` command in a child process, with its own
embedded Ray. Every `every_s` seconds one actor of it is killed with SIGKILL, picked from
the processes Ray names after their class (`ray::Collector`, `ray::ReplayShard`,
`ray::LearnerActor`, `ray::Evaluator`), each kind in turn in a shuffled order. Halfway,
the driver itself is killed instead and the same command is run again at once, as a
user would, and resumes; every process of the killed driver's embedded Ray must be gone
within RAY_GONE_WAIT_S (`left_behind` counts those that were not). When the run ends,
the report gives per fault what the run's own metrics say of it:

- `seconds_without_progress`: from the kill to the first metrics row with more env steps
  than before it (for the driver: to the resumed run's first row);
- `updates_lost`: learner updates before the kill minus those the learner started again
  from (the learner and the driver restart from the last checkpoint);
- `transitions_lost`: replay records before the kill minus those restored (shards and the
  driver restore the last replay save);

and the best in-training evaluation, and the return of the run's best weights (best.pt)
over fresh episodes.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from dqn.checkpoint import DistributedCheckpoint
from dqn.config import Config, load_config
from dqn.errors import UserError

TITLES = {"collector": "ray::Collector", "shard": "ray::ReplayShard",
          "learner": "ray::LearnerActor", "evaluator": "ray::Evaluator"}
RAY_GONE_WAIT_S = 90.0   # for the processes of a killed driver's embedded Ray to exit


def fault_run(preset: str, overrides: list[str], every_s: float, kills: int,
              driver_kill: bool = True, seed: int = 0, eval_episodes: int = 10,
              kinds: tuple[str, ...] = tuple(TITLES), seconds: float | None = None) -> dict:
    """Train `preset` with `overrides` under `kills` actor kills of `kinds`, one every
    `every_s` seconds, and one driver kill; `seconds`: stop the run then (SIGTERM, as a
    user's Ctrl-C: a final checkpoint) instead of at its env-step target."""
    if every_s <= 0:
        raise UserError(f"--every-seconds {every_s:g} must be positive")
    if kills < 0:
        raise UserError(f"--kills {kills} must be 0 (a run without faults) or more")
    if seconds is not None and seconds <= 0:
        raise UserError(f"--seconds {seconds:g} must be positive")
    unknown = [k for k in kinds if k not in TITLES]
    if unknown or not kinds:
        raise UserError(f"--kinds {','.join(kinds)!r}: choose among {', '.join(TITLES)}")
    cfg = load_config(preset, overrides)          # bad input fails before anything starts
    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    if (run_dir / "checkpoint.pt").exists():
        raise UserError(f"run {cfg.run.name!r} exists already; a fault run starts from "
                        f"nothing: pick another run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "learner.cli", "train", "--preset", preset,
               "--no-progress", *overrides]
    log = open(run_dir / "faults.log", "a")
    rng, queue, events, orphans = random.Random(seed), [], [], []
    start = time.time()
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    next_kill = start + every_s
    driver_at = kills // 2 if driver_kill else -1
    stopped = False
    try:
        while child.poll() is None:
            time.sleep(0.2)
            if seconds is not None and not stopped and time.time() - start >= seconds:
                child.send_signal(signal.SIGTERM)
                stopped = True
            if (stopped or time.time() < next_kill
                    or len(events) >= kills + (driver_at >= 0)):
                continue
            if len(events) == driver_at:
                event, orphans = _kill_driver(child)
                events.append(event)
                child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                event["resumed"] = time.time()
            else:
                if not queue:
                    queue = rng.sample(list(kinds), len(kinds))
                event = _kill_actor(child, queue[0], rng)
                if event is None:       # none of that kind up yet (a restart in progress)
                    queue.append(queue.pop(0))
                    continue
                queue.pop(0)
                events.append(event)
            next_kill = time.time() + every_s
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
        log.close()
    if orphans:
        _, alive = psutil.wait_procs(orphans, timeout=max(
            0.0, events[driver_at]["time"] + RAY_GONE_WAIT_S - time.time()))
        events[driver_at]["left_behind"] = len(alive)
        for process in alive:      # none should be left; they would hold the CPUs
            process.kill()
    if child.returncode != 0:
        tail = (run_dir / "faults.log").read_text().strip().splitlines()[-1:]
        raise UserError(f"the run under faults ended with exit code {child.returncode}: "
                        f"{tail[0] if tail else 'no output'} (all of it: "
                        f"{run_dir / 'faults.log'})")
    return _report(cfg, run_dir, events, start, eval_episodes)


def _descendants(child: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(child.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _title(process: psutil.Process) -> str:
    try:
        return (process.cmdline() or [""])[0].split(".")[0]
    except psutil.Error:
        return ""


def _kill_actor(child: subprocess.Popen, kind: str, rng: random.Random) -> dict | None:
    found = [p for p in _descendants(child) if _title(p) == TITLES[kind]]
    if not found:
        return None
    victim = rng.choice(found)
    when = time.time()
    try:
        victim.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        return None
    return {"kind": kind, "pid": victim.pid, "time": when}


def _kill_driver(child: subprocess.Popen) -> tuple[dict, list[psutil.Process]]:
    """SIGKILL the driver; its embedded Ray's processes, to be watched until they go."""
    ray_processes = _descendants(child)
    when = time.time()
    child.send_signal(signal.SIGKILL)
    child.wait()
    return {"kind": "driver", "pid": child.pid, "time": when,
            "ray_processes": len(ray_processes)}, ray_processes


def _report(cfg: Config, run_dir: Path, events: list[dict], start: float,
            eval_episodes: int) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    progress = [r for r in rows if "charts/env_steps" in r]
    faults = []
    for event in events:
        before = [r for r in progress if r["time"] < event["time"]]
        after = [r for r in progress if r["time"] > event.get("resumed", event["time"])]
        fault = {k: v for k, v in event.items() if k not in ("time", "resumed")}
        fault["at_seconds"] = round(event["time"] - start, 1)
        if before and after:
            last = before[-1]
            moved = after[0] if event["kind"] == "driver" else next(
                (r for r in after if r["charts/env_steps"] > last["charts/env_steps"]), None)
            if moved is not None:
                fault["seconds_without_progress"] = round(moved["time"] - event["time"], 1)
            if event["kind"] == "driver":
                fault["updates_lost"] = max(0, last["learner/updates"]
                                            - after[0]["learner/updates"])
        if event["kind"] == "learner":
            lost = next((r["learner/updates_lost"] for r in rows if r["time"] > event["time"]
                         and "learner/updates_lost" in r), None)
            if lost is not None:
                fault["updates_lost"] = lost
        if event["kind"] in ("shard", "driver") and before:
            restored = next((r["replay/restored"] for r in rows if r["time"] > event["time"]
                             and "replay/restored" in r), None)
            if restored is not None:
                fault["transitions_lost"] = max(0, before[-1]["replay/size"] - restored)
        faults.append(fault)
    counted = {"collector": _increases(rows, "actors/restarts"),
               "shard": _count(rows, "replay/restarts"),
               "learner": _count(rows, "learner/restarts"),
               "evaluator": _count(rows, "eval/restarts")}
    injected = {kind: sum(f["kind"] == kind for f in faults) for kind in (*TITLES, "driver")}
    evaluations = [r["eval/mean_return"] for r in rows if "eval/mean_return" in r]
    learning = [r for r in progress if r.get("learner/updates", 0) > 0]
    return {"run": str(run_dir),
            "env_steps": DistributedCheckpoint.load(run_dir / "checkpoint.pt").env_steps,
            "faults_injected": injected, "deaths_counted_by_the_run": counted,
            "faults": faults, "learning_seconds": _span(learning),
            "learner_updates_per_s": _rate(learning, "learner/updates"),
            "env_steps_per_s": _rate(learning, "charts/env_steps"),
            "best_in_training_evaluation": max(evaluations) if evaluations else None,
            "best_weights_mean_return": _best_return(run_dir / "best.pt", eval_episodes,
                                                     cfg.run.seed),
            "eval_episodes": eval_episodes}


def _span(rows: list[dict]) -> float:
    return round(rows[-1]["time"] - rows[0]["time"], 1) if len(rows) > 1 else 0.0


def _rate(rows: list[dict], key: str) -> float | None:
    """`key`'s growth per second of the learning phase, counting what was redone after a
    restart (a learner or driver back at its last checkpoint counts from there again)."""
    if len(rows) < 2:
        return None
    grown = sum(max(0, b[key] - a[key]) for a, b in zip(rows, rows[1:]))
    return round(grown / max(_span(rows), 1e-9), 2)


def _count(rows: list[dict], key: str) -> int:
    return sum(key in r for r in rows)


def _increases(rows: list[dict], key: str) -> int:
    values = [r[key] for r in rows if key in r]
    return sum(b > a for a, b in zip(values, values[1:])) + bool(values and values[0] > 0)


def _best_return(path: Path, episodes: int, seed: int) -> float | None:
    if not path.is_file():
        return None
    from dqn.evaluation import evaluate
    from learner.evaluate import load_agent

    cfg, net = load_agent(path, None)
    returns = [e.score for e in evaluate(net, cfg.env, episodes, cfg.explore.eval_eps,
                                         seed=seed + 777_000)]
    return float(np.mean(returns))
