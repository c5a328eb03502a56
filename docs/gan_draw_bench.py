"""A drawing generator's class batch norms folded into one scale and offset per image
and channel (`ClassBatchNorm2d.fold_when_drawing`) against the four passes before:

    python docs/gan_draw_bench.py runs/gan-conditional [--repeats 12] [--n 1000]

Alternates the two, one draw of `--n` samples each, on the run's kept generator, and
prints the medians, their ratio and how many pixels the fold moves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from learner.gan.model import ClassBatchNorm2d, generate
from learner.gan.cli import _load_gan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    cfg, g, _ = _load_gan(Path(args.run), False)
    z = torch.randn(args.n, cfg.model.latent_size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(args.n) % len(cfg.data.games) if cfg.model.conditional else None
    times, drawn = {False: [], True: []}, {}
    for _ in range(args.repeats):
        for fold in (False, True):
            ClassBatchNorm2d.fold_when_drawing = fold
            start = time.perf_counter()
            drawn[fold] = generate(g, z, labels)
            times[fold].append(time.perf_counter() - start)
    before, now = (float(np.median(times[fold])) for fold in (False, True))
    moved = (drawn[True].int() - drawn[False].int()).abs()
    print(f"{args.n} samples: median {before:.3f} s before, {now:.3f} s folded, "
          f"folded / before {now / before:.3f}; {int((moved > 0).sum())} of {moved.numel()} "
          f"pixels moved, by at most {int(moved.max())}")


if __name__ == "__main__":
    main()
