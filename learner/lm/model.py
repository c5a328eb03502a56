"""A byte-level language model with an RNN, LSTM or GRU core, trained by truncated
backpropagation through time, scored in bits per character, and sampled.

    bytes (B, T) ─ embedding ─ recurrent layers ─ dropout ─ linear ─ logits (B, T, 256)
                                 ▲ state in   state out ▼  (carried to the next chunk)

Truncated BPTT with k = `chunk_bytes`: the corpus is read as B contiguous streams,
k bytes of each per update. The state at the end of one chunk starts the next, so
the model sees context far beyond k bytes; it is detached there, so gradients flow
back at most k steps and an update costs O(k), not O(length of the stream).

Bits per character = mean cross-entropy in nats / ln 2: what a perfect arithmetic
coder driven by the model would spend per byte (8 = knowing nothing; gzip gets ≈ 2
on C source).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from learner.lm.cells import ExplicitStack, State
from learner.lm.corpus import VOCAB_SIZE, Chunk, Streams
from learner.lm.cache import ContinuousCache
from learner.lm.config import CacheConfig, ModelConfig, TrainConfig
from dqn.precision import float32_layers, layers_of, training_dtype

GATE_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}
_FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_RECURRENT = tuple(_FUSED)  # precision.LAYERS that can run in float32 in bfloat16 passes


class CharLM(nn.Module):
    """Byte embedding, `cfg.num_layers` recurrent layers (torch's fused ones, or the
    explicit cells of cells.py), dropout, and a linear layer to 256 logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(VOCAB_SIZE, cfg.embed_dim)
        between = cfg.dropout if cfg.num_layers > 1 else 0.0  # torch warns otherwise
        if cfg.implementation == "fused":
            self.rnn = _FUSED[cfg.cell](cfg.embed_dim, cfg.hidden_size, cfg.num_layers,
                                        dropout=between, batch_first=True)
        else:
            self.rnn = ExplicitStack(cfg.cell, cfg.embed_dim, cfg.hidden_size,
                                     cfg.num_layers, between)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, VOCAB_SIZE)
        # Set by TBPTT where torch cannot run the fused cell under bfloat16 autocast:
        # the recurrent layers then run in float32 with autocast off.
        self.float32_recurrence = False

    def initial_state(self, batch: int) -> State:
        zeros = torch.zeros(self.cfg.num_layers, batch, self.cfg.hidden_size,
                            device=self.head.weight.device)
        return (zeros, zeros.clone()) if self.cfg.cell == "lstm" else zeros

    def forward(self, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Logits (B, T, 256) for bytes (B, T) and the state after the last byte."""
        outputs, state = self.hidden(inputs, state)
        return self.head(self.drop(outputs)), state

    def hidden(self, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The last recurrent layer's outputs (B, T, hidden) and the state after them."""
        embedded = self.embed(inputs)
        device = embedded.device.type
        if self.float32_recurrence and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return self.rnn(embedded.float(), state)
        return self.rnn(embedded, state)


def passes_dtype(model: CharLM, precision: str) -> torch.dtype:
    """The dtype of `model`'s training passes for `precision` (precision.training_dtype):
    a fused cell that cannot run in bfloat16 runs in float32 inside bfloat16 passes."""
    layers = layers_of(model)
    return training_dtype(precision, model.head.weight.device,
                          tuple(layer for layer in layers if layer not in _RECURRENT),
                          fallback=tuple(layer for layer in layers if layer in _RECURRENT))


def parameter_count(cfg: ModelConfig) -> int:
    """Weights of `CharLM(cfg)`, from the layer sizes (no model is built)."""
    e, h, blocks = cfg.embed_dim, cfg.hidden_size, GATE_BLOCKS[cfg.cell]
    recurrent = sum(blocks * h * ((e if layer == 0 else h) + h + 2)
                    for layer in range(cfg.num_layers))
    return VOCAB_SIZE * e + recurrent + h * VOCAB_SIZE + VOCAB_SIZE


def hidden_for_budget(cfg: ModelConfig, parameters: int) -> int:
    """The hidden size giving `cfg` (its cell, layers, embedding) the parameter count
    closest to `parameters`: how the compare command matches RNN, LSTM and GRU."""
    def count(h: int) -> int:
        return parameter_count(dataclasses.replace(cfg, hidden_size=h))

    lo, hi = 1, 1
    while count(hi) < parameters:
        hi *= 2
    while hi - lo > 1:  # count grows with h: bisect to the pair around the budget
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < parameters else (lo, mid)
    return min((lo, hi), key=lambda h: abs(count(h) - parameters))


def detach(state: State) -> State:
    """Keep the values, drop the graph: where truncated BPTT cuts the gradient. The
    state carried on is float32 whatever the passes ran in (a no-op for float32)."""
    return (tuple(s.detach().float() for s in state) if isinstance(state, tuple)
            else state.detach().float())


def bits_per_char(nats: float, count: int) -> float:
    return nats / max(count, 1) / math.log(2)


def learning_rate(cfg: TrainConfig, updates: int, progress: float) -> float:
    """Linear warm-up over `warmup_updates`, then cosine decay to `final_lr_fraction`
    of the peak as `progress` (share of the budget spent, 0..1) goes to 1."""
    warm = min(1.0, (updates + 1) / cfg.warmup_updates) if cfg.warmup_updates else 1.0
    floor = cfg.final_lr_fraction
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0), 1)))
    return cfg.learning_rate * warm * cosine


class StepResult(NamedTuple):
    loss_nats: float  # mean cross-entropy per byte of the chunk
    bytes: int  # bytes trained on (streams × k)
    grad_norm: float  # before clipping


class TBPTT:
    """Truncated BPTT over `streams`: one chunk per `step`, the state carried across
    chunks (detached) and reset when the streams start over, and, with chance
    `state_reset`, for a single stream before any chunk."""

    def __init__(self, model: nn.Module, streams: Streams, grad_clip_norm: float,
                 dtype: torch.dtype = torch.float32, state_reset: float = 0.0):
        self.model, self.streams, self.clip = model, streams, grad_clip_norm
        self.core = getattr(model, "module", model)  # under DDP the CharLM is .module
        self.dtype = dtype  # of the passes; bfloat16: autocast, float32 weights and grads
        recurrent = tuple(layer for layer in layers_of(self.core) if layer in _RECURRENT)
        self.core.float32_recurrence = bool(
            float32_layers(dtype, self.core.head.weight.device, recurrent))
        self.state_reset = state_reset  # chance a stream's state restarts at a chunk
        self.state: State | None = None

    def step(self, optimizer: torch.optim.Optimizer) -> StepResult:
        chunk = self.streams.next()
        if chunk.fresh or self.state is None:
            self.state = self.core.initial_state(chunk.inputs.shape[0])
        elif self.state_reset > 0:
            self.state = _restart_some(self.state, self.state_reset)
        inputs, targets = _tensors(chunk, self.core)
        self.model.train()
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16,
                            enabled=self.dtype == torch.bfloat16):
            logits, state = self.model(inputs, self.state)
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.model.parameters(),
                                        self.clip if self.clip > 0 else math.inf)
        optimizer.step()
        self.state = detach(state)
        return StepResult(loss.item(), targets.numel(), float(norm))


def _restart_some(state: State, p: float) -> State:
    """The carried state with each stream's zeroed with chance `p`: the model meets a
    zero state at many places in training, as a validation stream does at its start,
    instead of only at the fixed starts of the streams."""
    first = state[0] if isinstance(state, tuple) else state  # (layers, streams, hidden)
    keep = (torch.rand(first.shape[1], device=first.device) >= p).to(first.dtype)
    keep = keep.view(1, -1, 1)
    return tuple(s * keep for s in state) if isinstance(state, tuple) else state * keep


def _tensors(chunk: Chunk, model: CharLM) -> tuple[torch.Tensor, torch.Tensor]:
    device = model.head.weight.device
    return (torch.from_numpy(chunk.inputs.astype(np.int64)).to(device),
            torch.from_numpy(chunk.targets.astype(np.int64)).to(device))


@torch.no_grad()
def evaluate(model: CharLM, streams: Streams, cache: CacheConfig | None = None
             ) -> tuple[float, float, int]:
    """Summed cross-entropy (nats) of the model with its cache, of the network alone, and
    bytes, over one pass of `streams`, the state (and the cache) carried from chunk to
    chunk as in training; dropout off. Without a cache the two sums are equal."""
    was_training = model.training
    model.eval()
    memory = _cache(cache)
    nats, plain, count, state = 0.0, 0.0, 0, None
    for chunk in streams.passes():
        if state is None:
            state = model.initial_state(chunk.inputs.shape[0])
        inputs, targets = _tensors(chunk, model)
        outputs, state = model.hidden(inputs, state)
        logits = model.head(outputs)
        flat = targets.reshape(-1)
        plain += F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), flat, reduction="sum").item()
        if memory.size:
            mixed = memory.log_probs(outputs, logits, targets)
            nats -= mixed.reshape(-1, VOCAB_SIZE).gather(1, flat[:, None]).sum().item()
        count += targets.numel()
    model.train(was_training)
    return (nats if memory.size else plain), plain, count


def _cache(cfg: CacheConfig | None) -> ContinuousCache:
    return ContinuousCache(cfg.size, cfg.theta, cfg.weight) if cfg else ContinuousCache(0, 0, 0)


@torch.no_grad()
def sample(model: CharLM, prime: bytes, length: int, temperature: float, seed: int,
           cache: CacheConfig | None = None) -> bytes:
    """`length` bytes drawn one at a time from softmax(log p / temperature), p the
    network's prediction (mixed with `cache` when given), after reading `prime` (a
    newline when empty); the same seed gives the same bytes."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    memory = _cache(cache)
    device = model.head.weight.device
    read = torch.tensor(list(prime or b"\n"), dtype=torch.int64, device=device)[None]
    outputs, state = model.hidden(read, model.initial_state(1))
    memory.push(outputs[:, :-1], read[:, 1:])
    drawn = []
    for _ in range(length):
        last = outputs[:, -1:]
        log_p = memory.log_probs(last, model.head(last))
        probs = F.softmax(log_p[0, -1] / temperature, dim=-1)
        byte = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)
        drawn.append(int(byte))
        memory.push(last, byte.view(1, 1))
        outputs, state = model.hidden(byte.view(1, 1), state)
    model.train(was_training)
    return bytes(drawn)
