"""The precision of training passes, one rule for the DQN learner, the GANs and the
language models.

`float32`, `bfloat16` (forward and backward passes under bfloat16 autocast; weights,
gradients, the optimizer and the loss stay float32) or `auto`: bfloat16 on a CPU with AMX
tiles (matrix units that multiply bfloat16 several times faster than float32), float32
on other CPUs and on GPUs. A job whose passes gain from bfloat16 on AVX-512 BF16 too (the
GAN's convolutions: 1.6x on an AMD EPYC, where the LSTM gained too little) asks for
`auto` to count that instruction set as well (`avx512_bf16=True`).

Whether torch can run a layer under bfloat16 autocast at all depends on the CPU and on
the kernels torch was built with (oneDNN's LSTM has no bfloat16 primitive on a CPU
without AVX-512, for one), so it is not read from CPU flags: `bfloat16_error` runs a tiny
forward and backward pass of that layer once per process and keeps the answer. A layer
that cannot run in bfloat16 runs in float32, said once in the log, and `auto` never
chooses bfloat16 for a job one of whose layers cannot.
"""

from __future__ import annotations

import functools
import sys

import torch
from torch import nn

# The layers that training passes run under autocast, probed one by one.
LAYERS = ("conv2d", "conv_transpose2d", "linear", "rnn", "lstm", "gru")
_NAMES = {"conv2d": "a convolution", "conv_transpose2d": "a transposed convolution",
          "linear": "a linear layer", "rnn": "an RNN", "lstm": "an LSTM", "gru": "a GRU"}


def training_dtype(precision: str, device: torch.device, layers: tuple[str, ...],
                   fallback: tuple[str, ...] = (), avx512_bf16: bool = False) -> torch.dtype:
    """The dtype of the training passes for `precision` (schema.PRECISIONS) on `device`,
    for a network of `layers` (names in LAYERS) and of `fallback` layers, which can run
    in float32 inside bfloat16 passes (`float32_layers`).

    auto: bfloat16 only on a CPU with native bfloat16 matrix units where every layer runs
    in it. bfloat16: bfloat16 where every one of `layers` runs in it, else float32, said
    once."""
    if precision == "float32":
        return torch.float32
    if precision not in ("auto", "bfloat16"):
        raise ValueError(f"precision {precision!r} is none of auto, float32, bfloat16")
    if precision == "auto":
        native = device.type == "cpu" and _native_bf16(avx512_bf16)
        return torch.bfloat16 if native and not any(
            bfloat16_error(layer, device.type) for layer in (*layers, *fallback)
        ) else torch.float32
    failing = [layer for layer in layers if bfloat16_error(layer, device.type)]
    for layer in failing:
        _say_once(layer, device.type, "the passes run in float32")
    return torch.float32 if failing else torch.bfloat16


def float32_layers(dtype: torch.dtype, device: torch.device, layers: tuple[str, ...]
                   ) -> tuple[str, ...]:
    """Of `layers`, those that must run in float32 when the passes are `dtype` on
    `device`: none in float32; in bfloat16, the ones torch cannot run in it (said once)."""
    if dtype != torch.bfloat16:
        return ()
    failing = tuple(layer for layer in layers if bfloat16_error(layer, device.type))
    for layer in failing:
        _say_once(layer, device.type, "it runs in float32, the rest in bfloat16")
    return failing


def bfloat16_passes(precision: str, device: torch.device, layers: tuple[str, ...],
                    avx512_bf16: bool = False) -> bool:
    """Whether `precision` runs the training passes under bfloat16 autocast on `device`."""
    return training_dtype(precision, device, layers, avx512_bf16=avx512_bf16) == torch.bfloat16


@functools.cache
def bfloat16_error(layer: str, device_type: str) -> str | None:
    """None if torch runs `layer` forward and backward under bfloat16 autocast on
    `device_type`, else the first sentence of its error. Probed once per process."""
    module, inputs = probe(layer)
    device = torch.device(device_type)
    module, inputs = module.to(device), inputs.to(device).requires_grad_()
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = module(inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.float().sum().backward()
    except RuntimeError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return first.split(". ")[0]  # without oneDNN's hint on how to debug it
    return None


def probe(layer: str) -> tuple[nn.Module, torch.Tensor]:
    """The tiny `layer` and inputs that `bfloat16_error` runs under autocast."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if layer == "conv2d":
            return nn.Conv2d(4, 8, 3, stride=2), torch.randn(2, 4, 9, 9)
        if layer == "conv_transpose2d":
            return nn.ConvTranspose2d(4, 8, 4, stride=2, padding=1), torch.randn(2, 4, 5, 5)
        if layer == "linear":
            return nn.Linear(8, 8), torch.randn(2, 8)
        recurrent = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[layer]
        return recurrent(8, 8, num_layers=2, batch_first=True), torch.randn(2, 3, 8)


_said: set[tuple[str, str]] = set()


def _say_once(layer: str, device_type: str, consequence: str) -> None:
    if (layer, device_type) in _said:
        return
    _said.add((layer, device_type))
    print(f"[precision] torch cannot run {_NAMES[layer]} under bfloat16 autocast on this "
          f"{device_type} ({bfloat16_error(layer, device_type)}): {consequence}",
          file=sys.stderr, flush=True)


def _native_bf16(avx512_bf16: bool) -> bool:
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    avx = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    return bool(amx() or (avx512_bf16 and avx()))


_KINDS = ((nn.Conv2d, "conv2d"), (nn.ConvTranspose2d, "conv_transpose2d"),
          (nn.Linear, "linear"), (nn.RNN, "rnn"), (nn.LSTM, "lstm"), (nn.GRU, "gru"))


def layers_of(module: nn.Module) -> tuple[str, ...]:
    """The names (LAYERS) of the kinds of layer in `module`, in LAYERS' order."""
    found = {name for m in module.modules() for kind, name in _KINDS if isinstance(m, kind)}
    return tuple(name for name in LAYERS if name in found)
