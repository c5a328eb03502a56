"""Q-networks: the Nature CNN (or the smaller 2013 one) for stacked frames, an MLP for
vector observations.

Both end in the same head: one hidden layer then Q-values, or with `dueling` two such
streams, V(s) and A(s, a), combined as Q = V + A - mean_a A (Wang et al. 2016).
uint8 frames are scaled to [0, 1] inside the network, so replay and the wire carry
bytes and never floats. The conv torsos keep weights and activations channels-last
(NHWC in memory, the same NCHW tensors to the code): oneDNN's CPU convolutions run
faster on it (docs/benchmarks.md, "Channels-last convolutions and fused Adam"; not
measured on a GPU yet).
"""

from __future__ import annotations

import torch
from torch import nn

from dqn.config import NetworkConfig

NATURE_HIDDEN = 512
NIPS2013_HIDDEN = 256


class QNetwork(nn.Module):
    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, cfg: NetworkConfig):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.num_actions = num_actions
        if len(obs_shape) == 3 and cfg.torso == "nips2013":  # Mnih et al. 2013
            self.torso = nn.Sequential(
                nn.Conv2d(obs_shape[0], 16, 8, stride=4), nn.ReLU(),
                nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(),
                nn.Flatten(),
            )
            hidden = NIPS2013_HIDDEN
        elif len(obs_shape) == 3:  # (stack, height, width): Mnih et al. 2015
            self.torso = nn.Sequential(
                nn.Conv2d(obs_shape[0], 32, 8, stride=4), nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
                nn.Flatten(),
            )
            hidden = NATURE_HIDDEN
        else:
            sizes = [int(torch.Size(obs_shape).numel()), *cfg.mlp_hidden]
            layers: list[nn.Module] = [nn.Flatten()]
            for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
                layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
            self.torso = nn.Sequential(*layers)
            hidden = sizes[-1]
        with torch.no_grad():
            features = self.torso(torch.zeros(1, *obs_shape)).shape[1]
        self.dueling = cfg.dueling
        self.hidden = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, num_actions)
        if cfg.dueling:
            self.value_hidden = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
            self.value_out = nn.Linear(hidden, 1)
        self.frames = len(obs_shape) == 3
        if self.frames:
            self.to(memory_format=torch.channels_last)  # the conv weights; survives .to(device)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (what the DQN paper's t-SNE shows)."""
        x = self.torso(self.prepare(obs))
        h = self.hidden(x)
        return torch.cat([h, self.value_hidden(x)], dim=1) if self.dueling else h

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.torso(self.prepare(obs))
        advantage = self.out(self.hidden(x))
        if not self.dueling:
            return advantage
        value = self.value_out(self.value_hidden(x))
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """The torso's input: floats in [0, 1] from uint8 frames, stacks laid out
        channels-last (the bytes are reordered before the float conversion, where they are
        4x smaller). Prepared input passes through unchanged, so a caller that feeds one
        batch to two networks (the learner's next states) prepares it once."""
        if self.frames:
            obs = obs.contiguous(memory_format=torch.channels_last)
        return obs.float().div_(255.0) if obs.dtype == torch.uint8 else obs.float()
