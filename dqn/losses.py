"""Pure loss functions: n-step (double) DQN targets and the importance-weighted Huber loss.

    target_i = R_i + discount_i * Q_target(s'_i, a*_i)
    a*_i     = argmax_a Q_online(s'_i, a)   (double DQN)   or   argmax_a Q_target(s'_i, a)

with R_i the n-step return and discount_i = gamma^m_i, 0 after a terminal (dqn.nstep).
The loss is mean_i w_i * huber(target_i - Q_online(s_i, a_i)); |TD| comes back per sample
to become the new replay priorities.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class LossOutput(NamedTuple):
    loss: torch.Tensor      # scalar, differentiable
    td_abs: torch.Tensor    # (B,) |target - Q(s, a)|, detached
    q_taken: torch.Tensor   # (B,) Q(s, a), detached
    target: torch.Tensor    # (B,)


def q_targets(reward: torch.Tensor, discount: torch.Tensor, q_next_online: torch.Tensor | None,
              q_next_target: torch.Tensor) -> torch.Tensor:
    """n-step targets; pass `q_next_online=None` for the plain (non-double) max target."""
    chooser = q_next_target if q_next_online is None else q_next_online
    best = chooser.argmax(dim=1, keepdim=True)
    return reward + discount * q_next_target.gather(1, best).squeeze(1)


def huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    """0.5 x^2 inside |x| <= delta, delta (|x| - delta/2) outside."""
    ax = x.abs()
    return torch.where(ax <= delta, 0.5 * x * x, delta * (ax - 0.5 * delta))


def td_loss(q: torch.Tensor, action: torch.Tensor, target: torch.Tensor,
            weight: torch.Tensor, delta: float) -> LossOutput:
    q_taken = q.gather(1, action.long().unsqueeze(1)).squeeze(1)
    td = target.detach() - q_taken
    loss = (weight * huber(td, delta)).mean()
    return LossOutput(loss, td.detach().abs(), q_taken.detach(), target.detach())
