"""What the kept generator's selection draws cost an evaluated epoch, in one process:
one selection draw against `quality.selection_draws`, beside the report draws.

    python docs/gan_selection_cost.py runs/gan-conditional [--repeats 3]

Times (best of `--repeats`) on the run's kept generator, judged on its own held-out
frames with its own config: the training step is untouched, so this is the whole cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from learner.gan.cli import _load_gan, checkpoint_judge
from learner.gan.job import score_generator, selection_cfd


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg, g, state = _load_gan(Path(args.run), False)
    _, judge = checkpoint_judge(cfg, state)
    one = dataclasses.replace(cfg, quality=dataclasses.replace(cfg.quality,
                                                               selection_draws=1))
    single = best_seconds(lambda: selection_cfd(one, judge, g), args.repeats)
    several = best_seconds(lambda: selection_cfd(cfg, judge, g), args.repeats)
    report = best_seconds(lambda: score_generator(cfg, judge, g), args.repeats)
    n = cfg.quality.selection_draws
    print(f"selection: 1 draw {single:.2f} s, {n} draws {several:.2f} s "
          f"({several / single:.2f}x); report ({cfg.quality.draws} draws) {report:.2f} s; "
          f"an evaluated epoch {report + single:.2f} -> {report + several:.2f} s "
          f"(+{several - single:.2f} s)")


if __name__ == "__main__":
    main()
