"""Metrics to a JSON-lines file and to W&B, on one global x-axis.

The DQN trainers step on env frames (`global/env_frames`); the Ray Train jobs name
their own axis (`step_key`), e.g. generator updates or trained tokens.

W&B runs offline when no API key is configured (sync later with `wandb sync`), online
when one is, and `WANDB_MODE=disabled` turns it off (the tests do). Logging never
kills training: a W&B failure is reported once and logging goes on to the file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

STEP_KEY = "global/env_frames"


def wandb_mode() -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").is_file()
    return "online" if has_key else "offline"


class MetricLogger:
    def __init__(self, run_dir: Path, config: dict[str, Any], *, project: str = "raydqn",
                 group: str | None = None, job_type: str = "train", name: str = "run",
                 resume: bool = False, step_key: str = STEP_KEY):
        self.step_key = step_key
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        self._file = self.path.open("a")
        self._wandb = None
        mode = wandb_mode()
        if mode == "disabled":
            return
        try:
            import wandb

            self._wandb = wandb.init(
                project=project, group=group, job_type=job_type, name=name, config=config,
                mode=mode, dir=str(run_dir), id=_run_id(run_dir), resume="allow" if resume
                else None, settings=wandb.Settings(console="off", silent=True))
            self._wandb.define_metric(step_key)
            self._wandb.define_metric("*", step_metric=step_key)
        except Exception as err:  # logging must never stop training
            self._warn(err)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {self.step_key: step, "time": time.time(), **metrics}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._wandb is not None:
            try:
                self._wandb.log(row)
            except Exception as err:
                self._warn(err)

    def log_image(self, step: int, key: str, png: Path, caption: str | None = None) -> None:
        """An image already written to disk, shown in W&B's media panel."""
        if self._wandb is not None:
            self._log_rich(step, lambda wandb: {key: wandb.Image(str(png), caption=caption)})

    def log_table(self, step: int, key: str, columns: Sequence[str],
                  rows: Sequence[Sequence[Any]]) -> None:
        if self._wandb is not None:
            self._log_rich(step, lambda wandb: {
                key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def _log_rich(self, step: int, build: Any) -> None:
        try:
            import wandb

            self._wandb.log({self.step_key: step, **build(wandb)})
        except Exception as err:
            self._warn(err)

    def log_checkpoint(self, path: Path, step: int) -> None:
        """The checkpoint file as a W&B model artifact (a new version each time)."""
        if self._wandb is None:
            return
        try:
            import wandb

            artifact = wandb.Artifact(f"{self._wandb.name}-checkpoint", type="model",
                                      metadata={self.step_key: step})
            if path.is_dir():
                artifact.add_dir(str(path))
            else:
                artifact.add_file(str(path))
            self._wandb.log_artifact(artifact)
        except Exception as err:
            self._warn(err)

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            try:
                self._wandb.finish()
            except Exception as err:
                self._warn(err)

    def _warn(self, err: Exception) -> None:
        print(f"warning: W&B logging stopped ({type(err).__name__}: {err}); metrics go on "
              f"to {self.path}", file=sys.stderr)
        self._wandb = None


def _run_id(run_dir: Path) -> str:
    """A stable W&B id per run folder, so rerunning the same run name resumes it."""
    id_file = run_dir / "wandb_id"
    if not id_file.exists():
        import uuid

        id_file.write_text(uuid.uuid4().hex[:12])
    return id_file.read_text().strip()
