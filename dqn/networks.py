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

import copy

import torch
from torch import nn

from dqn.config import NetworkConfig

NATURE_HIDDEN = 512
NIPS2013_HIDDEN = 256
DORMANT_TAU = 0.025  # a unit is dormant below this share of its layer's mean activation


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
        self.conv1_zero_sum = self.frames and cfg.conv1_init == "zero_sum"
        if self.conv1_zero_sum:
            _zero_sum(self.torso[0])
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


def _zero_sum(conv: nn.Conv2d) -> None:
    """Each filter's weights shifted to sum to zero and its bias made positive: a flat input
    then gives each filter its (positive) bias."""
    with torch.no_grad():
        conv.weight -= conv.weight.mean(dim=(1, 2, 3), keepdim=True)
        conv.bias.abs_()


@torch.no_grad()
def dormant_units(net: nn.Module, obs: torch.Tensor, tau: float = DORMANT_TAU
                  ) -> list[tuple[str, torch.Tensor]]:
    """(layer name, boolean mask of its dormant units) for each ReLU layer of `net` on `obs`.

    A unit (a conv channel, or a fully connected neuron) is tau-dormant (Sokar et al. 2023)
    when its mean activation over the batch (and the image) is at most tau times its
    layer's mean over units; a dormant unit passes (almost) no gradient and stays so. The
    layers are named conv1, conv2, ... and fc1, fc2, ... in order, by the layer each ReLU
    follows (with a dueling head, the value stream's hidden layer comes last).
    """
    names, means, hooks = [], [], []
    for name, relu, _ in _relu_layers(net):
        names.append(name)
        hooks.append(relu.register_forward_hook(
            lambda _m, _i, out: means.append(out.float().mean(
                dim=[d for d in range(out.dim()) if d != 1]))))
    try:
        net(obs)
    finally:
        for hook in hooks:
            hook.remove()
    return [(name, unit_means <= tau * unit_means.mean() if unit_means.mean() > 0
             else torch.ones_like(unit_means, dtype=torch.bool))
            for name, unit_means in zip(names, means)]


def dormant_fractions(net: nn.Module, obs: torch.Tensor, tau: float = DORMANT_TAU) -> dict:
    """The share of dormant units (dormant_units) in each ReLU layer of `net` on the batch
    `obs`, and in all."""
    masks = dormant_units(net, obs, tau)
    result = {name: float(mask.float().mean()) for name, mask in masks}
    result["all"] = (sum(int(mask.sum()) for _, mask in masks)
                     / max(sum(len(mask) for _, mask in masks), 1))
    return result


@torch.no_grad()
def recycle_dormant(net: QNetwork, obs: torch.Tensor,
                    optimizer: torch.optim.Optimizer | None = None) -> int:
    """ReDo (Sokar et al. 2023): every dormant unit of `net` on `obs` gets fresh incoming
    weights (the layer's own initialization, zero-sum for conv1 when the network uses it)
    and zero outgoing weights, so the network's output is unchanged and the unit can learn
    again; the optimizer's moments of those weights restart from zero. Returns the number
    of units recycled."""
    recycled = 0
    for (_, dead), (layer, readers) in zip(dormant_units(net, obs), _producers(net)):
        idx = dead.nonzero().flatten()
        if not len(idx):
            continue
        fresh = copy.deepcopy(layer)
        fresh.reset_parameters()
        if net.conv1_zero_sum and layer is net.torso[0]:
            _zero_sum(fresh)
        layer.weight[idx] = fresh.weight[idx]
        layer.bias[idx] = fresh.bias[idx]
        _reset_moments(optimizer, layer.weight, idx)
        _reset_moments(optimizer, layer.bias, idx)
        for reader in readers:
            per_unit = reader.weight.shape[1] // len(dead)   # H x W columns after a flatten
            cols = (idx[:, None] * per_unit + torch.arange(per_unit, device=idx.device)).flatten()
            reader.weight[:, cols] = 0
            _reset_moments(optimizer, reader.weight, (slice(None), cols))
        recycled += len(idx)
    return recycled


def _producers(net: QNetwork) -> list[tuple[nn.Module, list[nn.Module]]]:
    """(the layer before each ReLU, the layers that read its units), in dormant_units' order."""
    torso = [m for m in net.torso if isinstance(m, (nn.Conv2d, nn.Linear))]
    heads = [net.hidden[0]] + ([net.value_hidden[0]] if net.dueling else [])
    chain = [(layer, [torso[i + 1]] if i + 1 < len(torso) else heads)
             for i, layer in enumerate(torso)]
    chain.append((net.hidden[0], [net.out]))
    if net.dueling:
        chain.append((net.value_hidden[0], [net.value_out]))
    return chain


def _reset_moments(optimizer: torch.optim.Optimizer | None, param: torch.Tensor, index) -> None:
    state = optimizer.state.get(param) if optimizer is not None else None
    for key in ("exp_avg", "exp_avg_sq"):
        if state and key in state:
            state[key][index] = 0


def dormant_metrics(fractions: dict) -> dict:
    """dormant_fractions as logged metrics: learner/dormant_units and one per layer."""
    return {("learner/dormant_units" if name == "all" else f"learner/dormant_units_{name}"): v
            for name, v in fractions.items()}


def unit_counts(net: nn.Module) -> dict:
    """Units (conv channels, neurons) of each ReLU layer, named as in dormant_fractions."""
    return {name: units for name, _, units in _relu_layers(net)}


def _relu_layers(net: nn.Module) -> list:
    """(name, ReLU module, units) for each ReLU, in order, named by the layer it follows."""
    layers, counts, last = [], {"conv": 0, "fc": 0}, None
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last = module
        elif isinstance(module, nn.ReLU) and last is not None:
            kind = "conv" if isinstance(last, nn.Conv2d) else "fc"
            counts[kind] += 1
            units = last.out_channels if kind == "conv" else last.out_features
            layers.append((f"{kind}{counts[kind]}", module, units))
    return layers
