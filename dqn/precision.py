"""The precision of training passes, one rule for the DQN learner and the language models.

`float32`, `bfloat16` (forward and backward passes under bfloat16 autocast; weights,
gradients, the optimizer and the loss stay float32) or `auto`: bfloat16 on a CPU with AMX
tiles (matrix units that multiply bfloat16 several times faster than float32), float32
on other CPUs and on GPUs.
"""

from __future__ import annotations

import torch


def training_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the training passes for `precision` (schema.PRECISIONS) on `device`."""
    if precision == "auto":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        return torch.bfloat16 if device.type == "cpu" and amx() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]


def bfloat16_passes(precision: str, device: torch.device) -> bool:
    """Whether `precision` runs the training passes under bfloat16 autocast on `device`."""
    return training_dtype(precision, device) == torch.bfloat16
