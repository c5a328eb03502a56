"""A continuous cache for the language models (Grave, Joulin & Usunier 2017, "Improving
neural language models with a continuous cache").

The recurrent network predicts the next byte from its state; header files repeat long
identifiers (`V4L2_CID_MPEG_VIDEO_H264_...`) that a held-out file introduces and then
uses dozens of times, which a network trained on other files cannot know. The cache
keeps, per stream, the hidden states h_i of the last `size` positions with the byte
that followed each, and mixes a copy distribution into the prediction:

    p_cache(w | h_t) ∝ Σ_{i<t, next(i)=w} exp(θ h_t · h_i)
    p(w) = (1 − λ) p_model(w) + λ p_cache(w)

Nothing is trained: the network's own states are the keys, so a position whose state
resembles an earlier one's predicts what came after that one. Only bytes already read
are used (the byte after i < t is the input at i + 1 ≤ t), so the mix is a proper
language model and its bits/char are comparable with the network's alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class ContinuousCache:
    """Per-stream memory of (hidden state, next byte) pairs, carried from chunk to chunk
    like the recurrent state: a ring of `size` slots, each with the position it holds."""

    def __init__(self, size: int, theta: float, weight: float):
        self.size, self.theta, self.weight = size, theta, weight
        self.keys: torch.Tensor | None = None  # (B, size, H) hidden states
        self.values: torch.Tensor | None = None  # (B, size) the byte after each
        self.positions: torch.Tensor | None = None  # (size,) -1: empty
        self.clock = 0  # position of the next byte pushed

    def log_probs(self, hidden: torch.Tensor, logits: torch.Tensor,
                  nexts: torch.Tensor | None = None) -> torch.Tensor:
        """Mixed log-probabilities (B, T, V) for a chunk whose states are `hidden` (B, T, H)
        and the network's `logits` (B, T, V). `nexts` (B, T), the byte after each
        position, lets position t also copy from positions i < t of this chunk (it is
        only read at i < t: bytes already seen); then the chunk joins the memory. Without
        `nexts` (sampling, T = 1) only the memory is used; call `push` once drawn."""
        log_model = F.log_softmax(logits.float(), dim=-1)
        if self.size and self.weight:
            log_model = self._mix(hidden.float(), log_model, nexts)
        if nexts is not None:
            self.push(hidden, nexts)
        return log_model

    def _mix(self, hidden: torch.Tensor, log_model: torch.Tensor,
             nexts: torch.Tensor | None) -> torch.Tensor:
        batch, steps, _ = hidden.shape
        device = hidden.device
        query = self.clock + torch.arange(steps, device=device)[:, None]  # (T, 1)
        scaled = hidden * self.theta
        scores, allowed, values = [], [], []
        if self.keys is not None:  # the memory: all before this chunk, within the window
            scores.append(torch.bmm(scaled, self.keys.transpose(1, 2)))
            allowed.append((self.positions >= 0) & (self.positions >= query - self.size))
            values.append(self.values)
        if nexts is not None:  # this chunk: i < t
            scores.append(torch.bmm(scaled, hidden.transpose(1, 2)))
            mine = query.T  # (1, T): positions of this chunk's keys
            allowed.append((mine < query) & (mine >= query - self.size))
            values.append(nexts.long())
        if not scores:
            return log_model
        allowed_all = torch.cat(allowed, 1)  # (T, K)
        has = allowed_all.any(-1)  # (T,): the first position of a stream has nothing yet
        keep = allowed_all | ~has[:, None]  # rows with nothing stay finite; lambda is 0 there
        weights = torch.softmax(torch.cat(scores, 2).masked_fill_(~keep, -math.inf), dim=-1)
        index = torch.cat(values, 1)[:, None, :].expand(batch, steps, -1)
        copied = torch.zeros_like(log_model).scatter_add_(2, index, weights)
        lam = self.weight * has.to(log_model.dtype)[None, :, None]
        return torch.logaddexp(torch.log1p(-lam) + log_model,
                               torch.log(lam) + torch.log(copied))

    def push(self, hidden: torch.Tensor, nexts: torch.Tensor) -> None:
        """Remember (B, T) positions: each takes the slot of the oldest."""
        if self.size == 0:
            return
        batch, steps, width = hidden.shape
        if self.keys is None:
            self.keys = hidden.new_zeros(batch, self.size, width, dtype=torch.float32)
            self.values = nexts.new_zeros(batch, self.size, dtype=torch.int64)
            self.positions = torch.full((self.size,), -1, dtype=torch.int64,
                                        device=hidden.device)
        kept = min(steps, self.size)  # a chunk longer than the window: its newest part
        where = self.clock + torch.arange(steps - kept, steps, device=hidden.device)
        slots = where % self.size
        self.keys[:, slots] = hidden[:, -kept:].detach().float()
        self.values[:, slots] = nexts[:, -kept:].long()
        self.positions[slots] = where
        self.clock += steps
