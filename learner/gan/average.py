"""The generator's exponential moving average, the weights its samples and scores use."""

from __future__ import annotations

import copy

import torch
from torch import nn


class AveragedGenerator:
    """An exponential moving average of the generator's weights (Karras et al. 2018;
    Yazici et al. 2019): samples from it are smoother and do not swing with every
    round of the two-player game. Its batch-norm statistics are recomputed from its own
    outputs before it draws ("standing statistics", Brock et al. 2019), because the
    live generator's running statistics belong to other weights."""

    def __init__(self, generator: nn.Module, decay: float, updates: int = 0):
        self.decay, self.updates = decay, updates
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        """Average in the live weights; early on the decay is lower, (1 + t) / (10 + t),
        so the average does not cling to the random initialization."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for mine, live in zip(self.model.parameters(), generator.parameters()):
            mine.lerp_(live, 1.0 - decay)

    @torch.no_grad()
    def ready(self, batches: int = 16, batch: int = 64, seed: int = 0) -> nn.Module:
        """The averaged generator in eval mode, its batch-norm statistics averaged over
        `batches` batches of fresh noise (and labels spread over the classes)."""
        g = self.model
        norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
        gen = torch.Generator().manual_seed(seed)
        device = next(g.parameters()).device
        g.train()
        for _ in range(batches):
            z = torch.randn(batch, g.latent_size, generator=gen).to(device)
            labels = (torch.randint(0, g.num_classes, (batch,), generator=gen).to(device)
                      if g.embed is not None else None)
            g(z, labels)
        for m in norms:
            m.momentum = 0.1
        return g.eval()
