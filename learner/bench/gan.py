"""`raydqn bench gan`: the GAN job's training update, beside its bare limit measured in the
same run.

Ours: the preset's networks and step (`learner.gan.model.train_step`) as the job runs
them: channels-last, bfloat16 passes where `train.precision` picks them, `cpus_per_worker`
torch threads, on random frames and labels. The limit: the same networks, weights and
step with each of the job's own convolutions (`learner.gan.conv`: the matrix-product
weight gradients and the matrix-product first layer) swapped for the torch layer it
derives from, so the ratio is what those layers buy over plain `nn.Conv2d` /
`nn.ConvTranspose2d`. The two alternate (`paired_timings`), so the noise of a shared
machine hits both alike.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dqn.precision import bfloat16_passes, layers_of
from dqn.process import torch_process
from dqn.schema import load_config
from learner.bench.timing import paired_timings
from learner.gan.config import GanConfig
from learner.gan.conv import GemmGradConv2d, GemmGradConvTranspose2d, MatmulConvTranspose2d
from learner.gan.model import (Discriminator, GanParts, Generator, StepSettings, adam,
                               train_step)

PLAIN = {GemmGradConv2d: nn.Conv2d, GemmGradConvTranspose2d: nn.ConvTranspose2d,
         MatmulConvTranspose2d: nn.ConvTranspose2d}  # each layer's torch parent


def plain_layers(net: nn.Module) -> nn.Module:
    """A copy of `net` whose convolutions are torch's own classes: the same parameters,
    state dict and forward maths, torch's kernels forward and backward."""
    net = copy.deepcopy(net)
    for module in net.modules():
        if type(module) in PLAIN:
            module.__class__ = PLAIN[type(module)]
    return net


def bench_gan(preset: str, overrides: list[str], seconds: float) -> dict:
    """Updates/s and ms an update of the preset's GAN update and of its bare limit, and
    their ratio (ours / bare: above 1 where the job's layers are faster)."""
    cfg = load_config(preset, overrides, GanConfig)
    torch_process(max(1, int(cfg.ray.cpus_per_worker)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size, classes = cfg.data.image_size, len(cfg.data.games)
    torch.manual_seed(cfg.run.seed)
    g = Generator(cfg.model, size, classes).to(device, memory_format=torch.channels_last)
    d = Discriminator(cfg.model, size, classes).to(device, memory_format=torch.channels_last)
    layers = tuple(sorted({*layers_of(g), *layers_of(d)}))
    bf16 = bfloat16_passes(cfg.train.precision, device, layers, avx512_bf16=True)
    batch = cfg.train.batch_size // cfg.ray.num_workers   # one worker's share
    real = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    labels = (torch.randint(0, classes, (batch,), device=device) if cfg.model.conditional
              else None)
    ours = _updater(cfg, g, d, real, labels, bf16)
    bare = _updater(cfg, plain_layers(g), plain_layers(d), real, labels, bf16)
    (rate, cpu_ms), (bare_rate, bare_cpu_ms) = paired_timings(ours, bare, seconds)
    return {"preset": preset, "overrides": list(overrides), "device": str(device),
            "precision": "bfloat16" if bf16 else "float32",
            "torch_threads": torch.get_num_threads(), "batch_size": batch,
            "image_size": size,
            "updates_per_s": round(rate, 2), "ms_per_update": round(1000 / rate, 1),
            "cpu_ms_per_update": round(cpu_ms, 1),
            "bare_updates_per_s": round(bare_rate, 2),
            "bare_ms_per_update": round(1000 / bare_rate, 1),
            "bare_cpu_ms_per_update": round(bare_cpu_ms, 1),
            "bare": "the same networks with torch's nn.Conv2d / nn.ConvTranspose2d",
            "ratio": round(rate / bare_rate, 3)}


def _updater(cfg: GanConfig, g: nn.Module, d: nn.Module, real: torch.Tensor,
             labels: torch.Tensor | None, bf16: bool):
    """One training update of `g` and `d` (their own optimizers), as the job runs it."""
    parts = GanParts(g, d, adam(g, cfg.train.lr_g, cfg.train.beta1),
                     adam(d, cfg.train.lr_d, cfg.train.beta1))
    step = StepSettings.of(cfg)

    def update() -> None:  # train_step's .item() waits for a GPU to finish
        with torch.autocast(real.device.type, dtype=torch.bfloat16, enabled=bf16):
            train_step(parts, real, labels, step)
    update()  # the first call picks oneDNN's kernels
    return update

