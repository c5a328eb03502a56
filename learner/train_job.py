"""What the Ray Train jobs (GANs, language models) share.

    raydqn gan train ... / raydqn lm train ...
      └─ run_job(train_fn, cfg)          driver: Ray up, one TorchTrainer per run name
           └─ train_fn(loop_config)      every worker (DDP through ray.train.torch):
                state = restore()        # the latest checkpoint's state, None when fresh
                ...train...
                report(metrics, state)   # every rank calls it; rank 0 saves the state

A run lives in `<run.out_dir>/<run.name>/`: Ray Train's checkpoints (`checkpoint_*/`,
each holding `state.pt`), its run state, and rank 0's `metrics.jsonl` and W&B folder.
Rerunning the same run name resumes: Ray Train V2 reloads its checkpoint manager from
that folder and `ray.train.get_checkpoint()` hands the workers the latest checkpoint.
`FailureConfig(max_failures)` restarts a failed worker group from it too.

Worker output reaches the console as plain lines (`Progress`): a tqdm bar cannot
redraw through Ray's log forwarding.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from dqn.checkpoint import Record
from dqn.errors import UserError
from learner.cluster import init_ray

STATE_FILE = "state.pt"
R = TypeVar("R", bound=Record)


def run_dir_of(cfg: Any) -> Path:
    return Path(cfg.run.out_dir).resolve() / cfg.run.name


def run_job(train_fn: Callable[[dict], None], cfg: Any) -> ray.train.Result:
    """Run `train_fn(config)` on `cfg.ray.num_workers` Ray Train workers; config["cfg"]
    is `cfg` itself (a frozen dataclass) with `run.out_dir` made absolute: workers run
    in Ray's own working folder. Joins or starts Ray as `raydqn train` does."""
    absolute = str(Path(cfg.run.out_dir).resolve())
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=absolute))
    # Train V2 would send every worker print() through its logger *and* the console.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    owns_ray = init_ray(cfg, log_to_driver=True, dashboard=True)
    try:
        use_gpu = cfg.ray.use_gpu
        if use_gpu is None:
            use_gpu = ray.cluster_resources().get("GPU", 0) >= cfg.ray.num_workers
        trainer = TorchTrainer(
            train_fn, train_loop_config={"cfg": cfg},
            scaling_config=ScalingConfig(
                num_workers=cfg.ray.num_workers, use_gpu=use_gpu,
                resources_per_worker={"CPU": cfg.ray.cpus_per_worker}),
            run_config=RunConfig(
                name=cfg.run.name, storage_path=cfg.run.out_dir,
                failure_config=FailureConfig(max_failures=cfg.ray.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2)))
        return trainer.fit()
    finally:
        if owns_ray:
            ray.shutdown()


def rank() -> int:
    return ray.train.get_context().get_world_rank()


def world_size() -> int:
    return ray.train.get_context().get_world_size()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over the ranks (the values themselves with one worker)."""
    return _all_reduce(values, "SUM")


def all_max(value: float) -> float:
    """The largest `value` over the ranks (itself with one worker): one clock for all."""
    return _all_reduce([value], "MAX")[0]


def _all_reduce(values: list[float], op: str) -> list[float]:
    import torch.distributed as dist
    from ray.train.torch import get_device

    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=get_device())
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return tensor.tolist()


def restore(kind: type[R]) -> R | None:
    """The state saved by the latest `report(..., state)` of this run, or None."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return kind.load(Path(folder) / STATE_FILE)


def report(metrics: dict[str, float], state: Record | None = None) -> None:
    """Every rank must call this together (Ray Train synchronizes reports); rank 0
    alone writes `state`, the job's typed record."""
    if state is None or rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        state.save(Path(folder) / STATE_FILE)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))


def latest_state(path: Path, kind: type[R], hint: str = "") -> R:
    """A job's state from a run folder (its newest checkpoint) or a `state.pt` file,
    read outside Ray; a missing or unreadable one, or one of another kind, is a
    `UserError`."""
    if path.is_dir():
        files = sorted(path.glob(f"checkpoint_*/{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise UserError(f"no checkpoint in {str(path)!r} (expected "
                            f"checkpoint_*/{STATE_FILE}); train a run there first")
        path = files[-1]
    return kind.load(path, hint)


def check_resume(cfg: Any, kind: type[R], saved: Callable[[R], dict[str, dict]],
                 only: dict[str, tuple[str, ...]] | None = None) -> None:
    """Before Ray starts: a run name that already has checkpoints must hold a state of
    `kind`, and the sections of `cfg` that shape the networks must equal what
    `saved(state)` read from the newest one ({section: {key: value}}): every field, or
    the ones `only` names for a section. A key the checkpoint lacks counts as the
    field's default (an option added since)."""
    folder = run_dir_of(cfg)
    if not any(folder.glob("checkpoint_*")):
        return
    state = latest_state(folder, kind, "; pick another run.name")
    changed = []
    for section, there in saved(state).items():
        now = getattr(cfg, section)
        for f in dataclasses.fields(now):
            if only and section in only and f.name not in only[section]:
                continue
            default = (f.default if f.default_factory is dataclasses.MISSING
                       else f.default_factory())
            old, new = there.get(f.name, default), getattr(now, f.name)
            if (list(old) if isinstance(old, tuple) else old) != (
                    list(new) if isinstance(new, tuple) else new):
                changed.append(f"{section}.{f.name} = {old!r} there, {new!r} now")
    if changed:
        raise UserError(f"run {cfg.run.name!r} was trained with another model "
                        f"({'; '.join(changed)}); resume with the same model or pick "
                        f"another run.name")


class Progress:
    """One console line every `every_s` seconds: step/total, rate, ETA and metrics."""

    def __init__(self, total: int, unit: str, start: int = 0, every_s: float = 10.0):
        self.total, self.unit, self.every_s = total, unit, every_s
        self.start, self.t0, self.last = start, time.monotonic(), 0.0

    def update(self, step: int, metrics: dict[str, float], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        rate = (step - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else math.inf
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"[{step}/{self.total} {self.unit}  {rate:.3g} {self.unit}/s  "
              f"eta {_clock(eta)}]  {shown}", flush=True)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"
