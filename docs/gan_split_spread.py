"""How much the real-vs-real CFD moves with the split of the held-out frames.

    python docs/gan_split_spread.py runs/NAME [runs/NAME ...] [--draws 8]

For each run's frames and judge: the CFD between the two halves of one random split
(30 splits: min, median, max), and the mean over 20 and over 200 splits, each for
`--draws` split seeds (min and max). One JSON line a run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from learner.gan.data import load_frames, split_heldout
from learner.gan.quality import Judge, load_judge
from learner.gan.cli import _load_gan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--draws", type=int, default=8)
    args = parser.parse_args()
    for run in args.runs:
        cfg, _, state = _load_gan(run)
        _, held = split_heldout(load_frames(Path(state["files"]["frames"])),
                                cfg.data.heldout_fraction, cfg.run.seed)
        model = load_judge(Path(state["files"]["judge"]))

        def splits_of(splits: int, seed: int) -> np.ndarray:
            return Judge(model, held, seed, cfg.quality.samples, splits).baseline_splits

        one = splits_of(30, 1000)
        row = {"run": str(run), "seed": cfg.run.seed,
               "one split (min, median, max of 30)": [round(float(v), 4) for v in (
                   one.min(), np.median(one), one.max())]}
        for splits in (20, 200):
            means = [splits_of(splits, d).mean() for d in range(args.draws)]
            row[f"mean of {splits} (min, max of {args.draws})"] = [
                round(float(min(means)), 4), round(float(max(means)), 4)]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
