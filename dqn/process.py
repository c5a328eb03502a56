"""Per-process set-up for torch work: its thread count, and freed memory kept for reuse.

glibc serves every allocation above its mmap threshold (128 KB to start with, 32 MB at
most) by a fresh `mmap` and gives it back with `munmap` on free, and it trims the top of
its heap back to the kernel once enough is free there. A DQN update allocates and frees
tensors of 0.1-4 MB (a batch of 32 stacks is 0.9 MB as bytes, 3.6 MB as floats, then
the conv activations and their gradients), and an LSTM update over 64 bytes holds tens
of MB of gate activations; each time, the kernel hands the memory back as new zeroed
pages: ~2,700 page faults per DQN update, ~13,000 per LSTM update, a fifth of the CPU
time spent in the kernel (docs/benchmarks.md, "Freed memory kept"). Turning glibc's mmap
use off and its trimming nearly off once per process keeps freed blocks in the heap for
the next update; the process's footprint then stays at its peak instead of shrinking
between updates, so only processes that do repetitive torch work call this.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1    # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**30   # free heap top kept up to 1 GiB


def keep_freed_memory() -> bool:
    """Keep freed memory in this process's heap; False where libc has no `mallopt`
    (macOS, Windows) or refuses, which changes nothing but the speed."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def torch_process(threads: int, nice: int = 0) -> None:
    """Set up this process for torch work: `threads` intra-op threads (at least one),
    freed memory kept, and a niceness of at least `nice` (work that may wait, such as
    in-training evaluations, yields the CPU to the hot path; threads started later
    inherit it)."""
    import os

    import torch  # here, so that the CLI can keep memory without importing torch

    torch.set_num_threads(max(1, int(threads)))
    keep_freed_memory()
    if hasattr(os, "nice") and nice > os.nice(0):
        os.nice(nice - os.nice(0))
