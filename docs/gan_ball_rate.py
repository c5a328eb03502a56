"""How often pong's and breakout's ball is drawn: real frames against a GAN's samples.

    python docs/gan_ball_rate.py runs/gan-conditional [--n 512] [--last]

A frame "has a ball" when a pixel in the open field (away from the paddles, the walls
and the bricks) is in the ball's colour: pong's near white, breakout's red. The real
rate counts the run's own frames; the generated rate counts `--n` samples of each game
from the generator `raydqn gan sample` draws. Made for 64x64 frames of the default
games; the regions scale with the image size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from learner.gan.data import load_frames
from learner.gan.model import generate
from learner.gan.cli import _load_gan

# (rows, columns) of the open field as fractions of the frame, and the colour test.
REGIONS = {
    "pong": ((0.19, 0.84), (0.16, 0.81), lambda px: px.min(-1) > 170),
    "breakout": ((0.47, 0.86), (0.06, 0.94),
                 lambda px: (px[..., 0] > 120) & (px[..., 1] < 100) & (px[..., 2] < 100)),
}


def ball_rate(images: np.ndarray, game: str) -> float:
    (r0, r1), (c0, c1), test = REGIONS[game]
    s = images.shape[1]
    field = images[:, int(r0 * s):int(r1 * s), int(c0 * s):int(c1 * s)].astype(np.int32)
    return float(test(field).any((1, 2)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--last", action="store_true")
    args = parser.parse_args()
    cfg, g, state = _load_gan(args.run, args.last)
    names = tuple(state["names"])
    frames = load_frames(Path(state["files"]["frames"]))
    out = {"drawn_epoch": state["drawn_epoch"], "resize": cfg.data.resize}
    for game in REGIONS:
        if game not in names:
            continue
        z = torch.randn(args.n, cfg.model.latent_size,
                        generator=torch.Generator().manual_seed(0))
        fake = generate(g, z, torch.full((args.n,), names.index(game)))
        fake = fake.permute(0, 2, 3, 1).numpy()                     # NCHW -> NHWC
        real = frames.images[frames.labels == names.index(game)]
        out[game] = {"real": round(ball_rate(real, game), 3),
                     "generated": round(ball_rate(fake, game), 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
