"""The character language model as a Ray Train job (`raydqn lm train`).

    train_lm(cfg)                         driver: read + check the corpus, check a
      └─ run_job(worker, cfg)             resumed checkpoint fits, then Ray Train
           └─ worker (every rank, DDP)    its own shard of the training bytes as
                                          `streams_per_worker` streams; TBPTT updates;
                                          validation, samples, checkpoints together

The driver reads the corpus and ships its bytes inside the train function, so cluster
nodes need no copy of the files (Ray refuses functions over 100 MB: a larger corpus
needs a shared file system instead).

Every rank takes the same decisions at the same update: the clock is the slowest
rank's (an all-reduce per update, negligible next to an update), byte counts are
global, so the learning rate, the evaluations and the stop agree and DDP's gradient
all-reduces stay matched. A resumed run restores model, optimizer, counters and the
stream cursor; the carried hidden state restarts from zeros (one chunk's worth of
warm-up).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ray.train.torch import prepare_model

from learner.lm.model import (TBPTT, CharLM, bits_per_char, evaluate, learning_rate,
                              passes_dtype, sample)
from learner.lm.corpus import Corpus, Streams, load_corpus, shard, spread
from dqn.errors import UserError
from learner.lm.config import LMConfig
from dqn.metrics import MetricLogger
from dqn.process import torch_process
from learner.lm.state import LMState
from learner.train_job import (all_max, all_sum, check_resume, rank, report, restore,
                               run_dir_of, run_job, world_size)

STEP_KEY = "global/train_tokens"


@dataclass
class Counters:
    """What a checkpoint carries forward besides weights (bytes = tokens)."""

    updates: int = 0
    train_bytes: int = 0  # all workers together
    seconds: float = 0.0  # of the training loop, over all sessions
    cursor: int = 0  # chunks read in the current pass over the streams


@dataclass(frozen=True)
class LMOutcome:
    run_dir: Path
    updates: int
    train_bytes: int
    minutes: float
    train_bpc: float
    val_bpc: float  # the model's prediction: the network with its cache when on
    val_bpc_network: float  # the recurrent network alone
    tokens_per_s: float


def prepare(cfg: LMConfig) -> Corpus:
    """Everything the user gave, checked before Ray starts: the corpus (read here),
    its size against the streams, a resumed run's model."""
    corpus = load_corpus(cfg.corpus.paths, cfg.corpus.val_fraction)
    if corpus.binary_files:
        print(f"[lm] corpus: {corpus.binary_files} binary file(s) skipped, "
              f"{corpus.train_files + corpus.val_files} text file(s) read", flush=True)
    _check_sizes(cfg, corpus)
    _check_resume(cfg)
    return corpus


def train_lm(cfg: LMConfig, corpus: Corpus | None = None) -> LMOutcome:
    """Train on Ray (`corpus` from `prepare(cfg)`, read now when None); final metrics."""
    corpus = corpus if corpus is not None else prepare(cfg)
    result = run_job(functools.partial(_worker, corpus=corpus), cfg)
    m = result.metrics
    return LMOutcome(run_dir_of(cfg), int(m["updates"]), int(m[STEP_KEY]), m["minutes"],
                     m["losses/train_bpc"], m["losses/val_bpc"], m["losses/val_bpc_network"],
                     m["charts/tokens_per_s"])


def _check_sizes(cfg: LMConfig, corpus: Corpus) -> None:
    """Each worker's shard must hold its streams (Streams raises the UserError)."""
    workers, train = cfg.ray.num_workers, cfg.train
    Streams(shard(corpus.train, 0, workers), train.streams_per_worker, train.chunk_bytes)
    val = _validation_bytes(corpus, cfg, 0, workers)
    if (len(val) - 1) // train.eval_streams < train.chunk_bytes:
        raise UserError(f"validation set of {len(corpus.val):,} bytes ({corpus.val_files} "
                        f"files, at most train.eval_max_bytes = {train.eval_max_bytes:,} used)"
                        f" is too small for {workers} worker(s) x {train.eval_streams} "
                        f"streams of {train.chunk_bytes} bytes; raise corpus.val_fraction or "
                        f"lower train.eval_streams")


def _validation_bytes(corpus: Corpus, cfg: LMConfig, index: int, workers: int) -> np.ndarray:
    """The held-out bytes worker `index` scores: its part of the whole split, or of
    windows spread over it when it exceeds `train.eval_max_bytes`."""
    scored = spread(corpus.val, cfg.train.eval_max_bytes, workers * cfg.train.eval_streams)
    return shard(scored, index, workers)


def _check_resume(cfg: LMConfig) -> None:
    """A run name that already has checkpoints must hold this job with this model."""
    check_resume(cfg, LMState, lambda state: {"model": state.model_config})


def _worker(loop_config: dict, corpus: Corpus) -> None:
    cfg: LMConfig = loop_config["cfg"]
    torch_process(int(cfg.ray.cpus_per_worker))
    torch.manual_seed(cfg.run.seed)  # same initial weights on every rank
    saved = restore(LMState)
    model = CharLM(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.learning_rate, fused=True)
    counters = Counters()
    if saved is not None:
        model.load_state_dict(saved.model)
        optimizer.load_state_dict(saved.optimizer)
        counters = Counters(**saved.counters)
    torch.manual_seed(cfg.run.seed * 1000 + rank() + counters.updates)  # dropout masks
    Loop(cfg, corpus, prepare_model(model), optimizer, counters, resumed=saved is not None
         ).run()


class Loop:
    """One worker's training loop; rank 0 also logs, samples and checkpoints."""

    def __init__(self, cfg: LMConfig, corpus: Corpus, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, counters: Counters, resumed: bool):
        self.cfg, self.t, self.counters, self.optimizer = cfg, cfg.train, counters, optimizer
        self.core: CharLM = getattr(model, "module", model)
        self.rank, self.world = rank(), world_size()
        train = shard(corpus.train, self.rank, self.world)
        self.tbptt = TBPTT(model, Streams(train, self.t.streams_per_worker,
                                          self.t.chunk_bytes, counters.cursor),
                           self.t.grad_clip_norm,
                           passes_dtype(self.core, self.t.precision),
                           self.t.state_reset)
        self.val = Streams(_validation_bytes(corpus, cfg, self.rank, self.world),
                           self.t.eval_streams, self.t.chunk_bytes)
        self.logger = None
        if self.rank == 0:
            self.logger = MetricLogger(
                run_dir_of(cfg), cfg.to_dict(), group="lm", job_type=f"lm-{cfg.model.cell}",
                name=cfg.run.name, resume=resumed, step_key=STEP_KEY)
            print(f"[lm] {'resuming' if resumed else 'starting'} {cfg.run.name!r}: "
                  f"{cfg.model.cell} {cfg.model.num_layers}x{cfg.model.hidden_size}, "
                  f"{sum(p.numel() for p in self.core.parameters()):,} parameters, "
                  f"{len(corpus.train):,} train bytes ({corpus.train_files} files), "
                  f"{self.world} worker(s), {str(self.tbptt.dtype).removeprefix('torch.')} "
                  f"passes, at {counters.train_bytes:,} tokens", flush=True)
        self.samples: list[list] = []
        self.window = [0.0, 0, 0.0]  # loss-nats x bytes, bytes, seconds in updates
        self.session = [0, 0.0]  # bytes and update-seconds since this session began
        self.last_train_bpc = self.last_val_bpc = self.last_network_bpc = math.nan

    def run(self) -> None:
        start = time.monotonic() - self.counters.seconds
        while (progress := self._progress()) < 1:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.t, self.counters.updates, progress)
            began = time.monotonic()
            step = self.tbptt.step(self.optimizer)
            took = time.monotonic() - began
            c = self.counters
            c.updates, c.train_bytes = c.updates + 1, c.train_bytes + step.bytes * self.world
            c.cursor = self.tbptt.streams.cursor
            c.seconds = all_max(time.monotonic() - start)
            self._add(step.loss_nats * step.bytes, step.bytes, took)
            if c.updates % self.t.log_every_updates == 0:
                self._log(step.grad_norm, progress)
            if c.updates % self.t.eval_every_updates == 0:
                self._validate()
            if c.updates % self.t.checkpoint_every_updates == 0:
                report(self._summary(), self._state())
        if self.window[1]:
            self._log(math.nan, 1.0)
        val_bpc = self._validate()
        report({**self._summary(), "losses/val_bpc": val_bpc}, self._state())
        if self.logger is not None:
            self.logger.close()

    def _progress(self) -> float:
        """Share of the budget spent: the larger of the clock's and the bytes'."""
        c, t = self.counters, self.t
        shares = [c.seconds / 60 / t.budget_minutes if t.budget_minutes is not None else 0.0,
                  c.train_bytes / t.budget_bytes if t.budget_bytes is not None else 0.0]
        return max(shares) if t.budget_minutes != 0 else 1.0

    def _add(self, nats: float, count: int, seconds: float) -> None:
        self.window = [self.window[0] + nats, self.window[1] + count, self.window[2] + seconds]
        self.session = [self.session[0] + count, self.session[1] + seconds]

    def _log(self, grad_norm: float, progress: float) -> None:
        nats, count, seconds = all_sum(self.window)
        self.window = [0.0, 0, 0.0]
        self.last_train_bpc = bits_per_char(nats, int(count))
        if self.logger is None:
            return
        c = self.counters
        metrics = {"losses/train_bpc": self.last_train_bpc,
                   "charts/tokens_per_s": count / max(seconds / self.world, 1e-9),
                   "charts/learning_rate": self.optimizer.param_groups[0]["lr"],
                   "losses/grad_norm": grad_norm, "charts/updates": c.updates,
                   "charts/train_minutes": c.seconds / 60}
        self.logger.log(c.train_bytes, metrics)
        print(f"[lm {self.cfg.model.cell}] {c.train_bytes:,} tokens  {c.updates} updates  "
              f"{c.seconds / 60:.1f} min ({100 * progress:.0f}% of budget)  train "
              f"{self.last_train_bpc:.3f} bpc  {metrics['charts/tokens_per_s']:,.0f} tokens/s",
              flush=True)

    def _validate(self) -> float:
        nats, plain, count = all_sum(list(evaluate(self.core, self.val, self.cfg.cache)))
        val_bpc = bits_per_char(nats, int(count))
        self.last_val_bpc, self.last_network_bpc = val_bpc, bits_per_char(plain, int(count))
        if self.logger is None:
            return val_bpc
        c, t = self.counters, self.t
        text = sample(self.core, t.sample_prime.encode(), t.sample_bytes,
                      t.sample_temperature, seed=self.cfg.run.seed + c.updates)
        shown = (t.sample_prime.encode() + text).decode("utf-8", errors="replace")
        self.samples.append([c.train_bytes, round(val_bpc, 4), t.sample_temperature, shown])
        self.logger.log(c.train_bytes, {"losses/val_bpc": val_bpc,
                                        "losses/val_bpc_network": self.last_network_bpc})
        self.logger.log_table(c.train_bytes, "samples", ["tokens", "val_bpc", "temperature",
                                                         "text"], self.samples)
        with (run_dir_of(self.cfg) / "samples.txt").open("a") as f:
            f.write(f"===== {c.train_bytes:,} tokens, validation {val_bpc:.3f} bits/char, "
                    f"temperature {t.sample_temperature} =====\n{shown}\n")
        alone = (f" ({self.last_network_bpc:.3f} without the cache)"
                 if self.cfg.cache.size else "")
        print(f"[lm {self.cfg.model.cell}] validation {val_bpc:.3f} bits/char{alone} at "
              f"{c.train_bytes:,} tokens", flush=True)
        return val_bpc

    def _summary(self) -> dict[str, float]:
        c = self.counters
        return {STEP_KEY: c.train_bytes, "updates": c.updates, "minutes": c.seconds / 60,
                "losses/train_bpc": self.last_train_bpc,
                "losses/val_bpc": self.last_val_bpc,
                "losses/val_bpc_network": self.last_network_bpc,
                "charts/tokens_per_s": self.session[0] * self.world
                / max(self.session[1], 1e-9)}

    def _state(self) -> LMState:
        return LMState(dataclasses.asdict(self.cfg.model), dataclasses.asdict(self.cfg.cache),
                       self.core.state_dict(), self.optimizer.state_dict(),
                       dataclasses.asdict(self.counters), list(self.cfg.corpus.paths))
