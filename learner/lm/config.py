"""Configuration of the character language models (`raydqn lm ...`), presets in
configs/lm/.

Units live in the names: `bytes` (= characters = tokens: the vocabulary is the 256
byte values), `updates` (optimizer steps; each reads one chunk of
`chunk_bytes` from each of `streams_per_worker` streams on every worker), `minutes`
of the training loop (evaluations and checkpoints included, Ray start-up not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dqn.schema import PRECISIONS, ConfigRoot, JobRunConfig, ScalingSection, opt
from dqn.errors import UserError


@dataclass(frozen=True)
class CorpusConfig:
    paths: tuple[str, ...] = opt((), "text files, folders or globs (** recurses); empty: the "
                                 "Linux headers /usr/include/linux/**/*.h where present, else "
                                 "the Python standard library sources")
    val_fraction: float = opt(0.05, "share of the files held out for validation (split by "
                              "file, the same split for every seed)", lo=0.001, hi=0.5)


@dataclass(frozen=True)
class ModelConfig:
    cell: str = opt("lstm", "recurrent cell: rnn (tanh), lstm or gru",
                    choices=("rnn", "lstm", "gru"))
    embed_dim: int = opt(64, "size of the learned byte embedding", lo=1)
    hidden_size: int = opt(256, "units per recurrent layer", lo=1)
    num_layers: int = opt(2, "stacked recurrent layers", lo=1)
    dropout: float = opt(0.0, "dropout between layers and before the output layer",
                         lo=0.0, hi=0.9)
    implementation: str = opt("fused", "fused: torch's nn.RNN/LSTM/GRU; explicit: the gate "
                              "equations of learner/lm/cells.py in a Python loop (slow; same "
                              "maths)", choices=("fused", "explicit"))


@dataclass(frozen=True)
class CacheConfig:
    size: int = opt(0, "continuous cache (Grave et al. 2017, learner/lm/cache.py): how many past "
                    "positions per stream the prediction may copy the next byte from, by "
                    "the likeness of their hidden states to the current one; 0: off. Not "
                    "trained; used by validation (and `lm sample --cache`)", lo=0)
    theta: float = opt(0.5, "sharpness of the likeness: an earlier position weighs "
                       "exp(theta h_t . h_i)", lo=0.0)
    weight: float = opt(0.5, "lambda: p = (1 - lambda) p_network + lambda p_cache",
                        lo=0.0, hi=0.99)


@dataclass(frozen=True)
class TrainConfig:
    streams_per_worker: int = opt(64, "contiguous streams of the corpus read side by side "
                                  "by each worker (the batch size)", lo=1)
    chunk_bytes: int = opt(128, "k of truncated BPTT: bytes per chunk; the hidden state "
                           "carries over to the next chunk, gradients stop at its start",
                           lo=1)
    learning_rate: float = opt(3e-3, "Adam step size after warm-up", lo=0.0)
    final_lr_fraction: float = opt(0.05, "the cosine decay ends at this share of "
                                   "learning_rate when the budget is spent", lo=0.0, hi=1.0)
    warmup_updates: int = opt(50, "updates of linear learning-rate warm-up", lo=0)
    precision: str = opt("auto", "float32, or bfloat16: the training passes under bfloat16 "
                         "autocast (weights, Adam, the loss and the validation passes stay "
                         "float32; a cell torch cannot run in bfloat16 runs in float32); "
                         "auto: bfloat16 on a CPU with AMX tiles where torch runs every "
                         "layer in it, float32 elsewhere", choices=PRECISIONS)
    state_reset: float = opt(0.0, "chance, per stream and chunk, that the carried state "
                             "restarts from zeros in training (0: only where the streams "
                             "start over)", lo=0.0, hi=1.0)
    grad_clip_norm: float = opt(1.0, "global gradient-norm clip; 0 turns it off", lo=0.0)
    budget_minutes: float | None = opt(15.0, "stop after this many minutes of training "
                                       "(summed over resumes); null: no clock limit", lo=0.0)
    budget_bytes: int | None = opt(None, "stop after this many trained bytes (all workers, "
                                   "summed over resumes); null: no byte limit", lo=1)
    log_every_updates: int = opt(20, "updates between metric lines", lo=1)
    eval_every_updates: int = opt(300, "updates between validation passes", lo=1)
    eval_max_bytes: int = opt(500_000, "validation bytes scored per pass: all the held-out "
                              "files when they fit (the default corpus holds out 265 KB), "
                              "else evenly spaced windows of them; split between workers",
                              lo=2)
    eval_streams: int = opt(8, "streams of the validation pass per worker (few: each "
                            "stream starts from a zero state)", lo=1)
    checkpoint_every_updates: int = opt(600, "updates between checkpoints (one is always "
                                        "written at the end)", lo=1)
    sample_bytes: int = opt(400, "bytes sampled at each validation pass (W&B table)", lo=0)
    sample_prime: str = opt("#include", "text the logged samples start from")
    sample_temperature: float = opt(0.8, "softmax temperature of the logged samples",
                                    lo=0.01)


@dataclass(frozen=True)
class LMConfig(ConfigRoot):
    """The character language model job's configuration."""

    preset_folder: ClassVar[str] = "lm"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: JobRunConfig = field(default_factory=JobRunConfig)
    ray: ScalingSection = field(default_factory=ScalingSection)

    def check(self) -> None:
        train = self.train
        if train.budget_minutes is None and train.budget_bytes is None:
            raise UserError("config train.budget_minutes and train.budget_bytes are both null;"
                            " set at least one so the run has a budget")
