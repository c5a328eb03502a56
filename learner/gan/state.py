"""What a GAN checkpoint holds: enough to resume training, to sample and to score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dqn.checkpoint import Record


@dataclass
class GanState(Record):
    kind: ClassVar[str] = "gan"
    writer: ClassVar[str] = "the GAN job (raydqn gan train)"
    config: dict                  # GanConfig.to_dict()
    names: tuple                  # the classes (games), in label order
    files: dict                   # DataFiles: the frames and the judge it was trained with
    epoch: int                    # epochs trained
    g_updates: int                # generator updates
    generator: dict               # the live networks and their optimizers
    discriminator: dict
    opt_g: dict
    opt_d: dict
    last_metrics: dict            # the last epoch's metrics, handed back by a finished run
    train_seconds: float = 0.0    # of training, over all sessions (the budget's clock)
    start_seconds: float = 0.0    # frames, judge and Ray's start before the first epoch
    longest_evaluation: float = 0.0  # seconds: what the budget keeps back for one
    generator_ema: dict | None = None   # the moving average (train.ema_decay > 0)
    best: dict | None = None            # the kept generator's epoch and numbers
    generator_best: dict | None = None  # and its weights (quality.keep_best)
