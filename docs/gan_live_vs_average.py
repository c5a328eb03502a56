"""A run's last epoch scored twice: the moving average of the generator's weights and
the live weights (with their own batch-norm running statistics).

    python docs/gan_live_vs_average.py runs/NAME [runs/OTHER ...]

Prints one JSON line a run: the CFD / real-vs-real ratio of each, from the same 8
report draws x 200 splits as `raydqn gan score --last`. With `quality.keep_live` a run
chooses between the two at every evaluation; this reads the choice it faced at its end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dqn.checkpoint import load_weights
from learner.gan.model import Generator
from learner.gan.cli import _load_gan, checkpoint_judge
from learner.gan.job import score_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    for run in parser.parse_args().runs:
        cfg, average, state = _load_gan(run, last=True)
        _, judge = checkpoint_judge(cfg, state)
        live = Generator(cfg.model, cfg.data.image_size, len(state["names"]))
        load_weights(live, state["generator"], run)
        ratios = {name: round(score_generator(cfg, judge, g).ratio, 3)
                  for name, g in (("average", average), ("live", live.eval()))}
        print(json.dumps({"run": str(run), "epoch": state["epoch"], **ratios}), flush=True)


if __name__ == "__main__":
    main()
