"""A byte-level text corpus, split by file, cut into streams for truncated BPTT.

The vocabulary is the 256 byte values: no tokenizer, nothing to save beside the
model, and any file (C, Python, UTF-8 prose) is valid input.

Files, not bytes, are held out for validation, so the validation bits/char measure
text the model has never seen (a split inside a file would leak its licence header
and identifiers). The choice is a fixed-seed shuffle of the sorted paths: the same
paths give the same split on every machine and every worker.
"""

from __future__ import annotations

import glob
import math
import sysconfig
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from dqn.errors import UserError

VOCAB_SIZE = 256
LINUX_HEADERS = Path("/usr/include/linux")
SPLIT_SEED = 20240521  # fixed on purpose: the split must not move with run.seed
SNIFF_BYTES = 8192  # a NUL byte among a file's first this many bytes: binary (as git)


class Corpus(NamedTuple):
    train: np.ndarray  # uint8 bytes of the training files, concatenated
    val: np.ndarray  # uint8 bytes of the held-out files
    train_files: int
    val_files: int
    source: str  # what was read, for logs and docs
    binary_files: int = 0  # matched but skipped: not text (a NUL byte in their start)


def default_paths() -> tuple[str, ...]:
    """The Linux kernel headers where present (the lecture's C corpus), else the
    Python standard library sources, which every Python install has."""
    if LINUX_HEADERS.is_dir():
        return (str(LINUX_HEADERS / "**" / "*.h"),)
    return (str(Path(sysconfig.get_paths()["stdlib"]) / "**" / "*.py"),)


def find_files(patterns: Sequence[str]) -> list[Path]:
    """Files named by paths, folders (all files below) or globs (`**` recurses);
    a pattern matching no file is a `UserError` naming it."""
    found: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.is_file()]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in glob.glob(str(path), recursive=True)
                       if Path(p).is_file()]
        if not matches:
            raise UserError(f"corpus path {pattern!r} matches no file; give text files, "
                            f"folders or globs (corpus.paths)")
        found.update(p.resolve() for p in matches)
    return sorted(found)


def load_corpus(patterns: Sequence[str] = (), val_fraction: float = 0.05) -> Corpus:
    """Read the files (the default corpus when `patterns` is empty) and split them.

    At least one file goes to each side when there are two or more; a lone file is
    split at the byte `1 - val_fraction` of the way through instead."""
    patterns = tuple(patterns) or default_paths()
    files = find_files(patterns)
    texts = [f.read_bytes() for f in files]
    binary = sum(is_binary(t) for t in texts)
    nonempty = [(f, t) for f, t in zip(files, texts) if t and not is_binary(t)]
    if not nonempty:
        raise UserError(f"corpus {', '.join(map(repr, patterns))} holds no text: "
                        f"{len(files)} file(s), {binary} of them binary, "
                        f"{sum(len(t) for t in texts if not is_binary(t))} bytes of text")
    source = ", ".join(patterns)
    if len(nonempty) == 1:
        data = np.frombuffer(nonempty[0][1], dtype=np.uint8)
        cut = max(1, min(len(data) - 1, int(len(data) * (1 - val_fraction))))
        return Corpus(data[:cut], data[cut:], 1, 1, source, binary)  # one file, both sides
    order = np.random.default_rng(SPLIT_SEED).permutation(len(nonempty))
    n_val = min(len(nonempty) - 1, max(1, math.ceil(val_fraction * len(nonempty))))
    val_ids = set(order[:n_val].tolist())
    train = [t for i, (_, t) in enumerate(nonempty) if i not in val_ids]
    val = [t for i, (_, t) in enumerate(nonempty) if i in val_ids]
    return Corpus(_join(train), _join(val), len(train), len(val), source, binary)


def is_binary(data: bytes) -> bool:
    """Not text: a NUL byte among the first SNIFF_BYTES (images, archives, objects)."""
    return b"\0" in data[:SNIFF_BYTES]


def _join(texts: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(texts), dtype=np.uint8)


class Chunk(NamedTuple):
    inputs: np.ndarray  # (streams, k) bytes
    targets: np.ndarray  # (streams, k): the next byte of each input
    fresh: bool  # the streams start over here: the carried hidden state is stale


class Streams:
    """`data` as `n` contiguous streams read side by side, k bytes at a time.

    Stream j is the j-th n-th of `data`; chunk t of every stream directly follows
    chunk t-1, so the hidden state after one chunk is the right start for the next
    (truncated BPTT: carried forward, gradients cut between chunks). At the end of
    the streams the reading starts again from the top and `fresh` says so."""

    def __init__(self, data: np.ndarray, n: int, k: int, cursor: int = 0):
        length = (len(data) - 1) // n  # -1: every input needs a next byte as target
        if length < k:
            raise UserError(f"corpus of {len(data):,} bytes is too small for {n} streams "
                            f"of chunks of {k} bytes; it needs at least {n * k + 1:,} bytes "
                            f"(lower train.streams_per_worker or train.chunk_bytes)")
        self.k = k
        self.chunks_per_pass = length // k
        starts = np.arange(n) * length
        self._x = np.stack([data[s:s + length] for s in starts])
        self._y = np.stack([data[s + 1:s + length + 1] for s in starts])
        self.cursor = cursor % self.chunks_per_pass  # chunks read in the current pass

    def next(self) -> Chunk:
        t = self.cursor
        self.cursor = (t + 1) % self.chunks_per_pass
        window = slice(t * self.k, (t + 1) * self.k)
        return Chunk(self._x[:, window], self._y[:, window], fresh=t == 0)

    def passes(self) -> list[Chunk]:
        """Every chunk of one pass, in order (evaluation)."""
        return [Chunk(self._x[:, i * self.k:(i + 1) * self.k],
                      self._y[:, i * self.k:(i + 1) * self.k], fresh=i == 0)
                for i in range(self.chunks_per_pass)]


def spread(data: np.ndarray, max_bytes: int, parts: int) -> np.ndarray:
    """At most `max_bytes` of `data` for scoring: all of it when it fits, else the
    start of each of `parts` equal parts, joined: a prefix would score only the files
    that sort first."""
    if len(data) <= max_bytes:
        return data
    size, take = len(data) // parts, max_bytes // parts
    return np.concatenate([data[i * size:i * size + take] for i in range(parts)])


def shard(data: np.ndarray, index: int, count: int) -> np.ndarray:
    """The index-th of `count` contiguous parts: each Ray Train worker reads its own."""
    size = len(data) // count
    return data[index * size:(index + 1) * size]

