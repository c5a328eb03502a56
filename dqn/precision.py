"""The precision of training passes, one rule for the DQN learner and the language models.

`float32`, `bfloat16` (forward and backward passes under bfloat16 autocast; weights,
gradients, the optimizer and the loss stay float32) or `auto`: bfloat16 on a CPU with AMX
tiles (matrix units that multiply bfloat16 several times faster than float32), float32
on other CPUs and on GPUs. A job whose passes gain from bfloat16 on AVX-512 BF16 too (the
GAN's convolutions: 1.6x on an AMD EPYC, where the LSTM gained too little) asks for
`auto` to count that instruction set as well (`avx512_bf16=True`).
"""

from __future__ import annotations

import torch


def training_dtype(precision: str, device: torch.device, avx512_bf16: bool = False
                   ) -> torch.dtype:
    """The dtype of the training passes for `precision` (schema.PRECISIONS) on `device`."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and _native_bf16(avx512_bf16) \
            else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]


def _native_bf16(avx512_bf16: bool) -> bool:
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    avx = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    return bool(amx() or (avx512_bf16 and avx()))


def bfloat16_passes(precision: str, device: torch.device, avx512_bf16: bool = False) -> bool:
    """Whether `precision` runs the training passes under bfloat16 autocast on `device`."""
    return training_dtype(precision, device, avx512_bf16) == torch.bfloat16
