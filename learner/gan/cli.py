"""`raydqn gan ...`: build the frame data, train the GAN on Ray Train, draw and score.

    raydqn gan data   [--preset P] [section.key=value ...]
    raydqn gan train  [--preset P] [--address ADDR] [section.key=value ...]
    raydqn gan sample RUN_DIR|STATE.pt [--game pong] [--n 64] [--out grid.png] [--seed 0]
                      [--last]
    raydqn gan score  RUN_DIR|STATE.pt [--last]
    raydqn gan calibrate [--preset P] [section.key=value ...]

Everything the user can get wrong (config, game, image folder, checkpoint) is checked
here, before Ray starts; the frames and the judging classifier are built here too, so
the workers only read files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from typing import TYPE_CHECKING

from dqn.errors import UserError

if TYPE_CHECKING:  # the heavy imports wait until a gan command runs
    from learner.gan.data import FrameSet
    from learner.gan.model import Generator
    from learner.gan.config import GanConfig
    from learner.gan.quality import Judge
    from learner.gan.job import DataFiles
    from learner.gan.state import GanState


def add_parser(sub: argparse._SubParsersAction) -> None:
    gan = sub.add_parser("gan", help="DCGAN / conditional GAN on Atari frames (Ray Train)")
    cmds = gan.add_subparsers(dest="gan_command", required=True)
    for name, text in (("data", "render and cache the ALE frames (and the classifier)"),
                       ("train", "train on Ray Train workers; rerun a run name to resume"),
                       ("calibrate", "the CFD of real frames copied, shifted, noised, "
                        "blurred or collapsed: the scale a model's CFD is read on (JSON)")):
        p = cmds.add_parser(name, help=text)
        p.add_argument("--preset", default="conditional",
                       help="a configs/gan/ preset or a YAML path")
        p.usage = f"raydqn gan {name} [--preset NAME] [section.key=value ...]"
        if name == "train":
            p.add_argument("--address", help="Ray cluster to join (sets ray.address)")
    sample = cmds.add_parser("sample", help="draw a grid of images from a checkpoint")
    sample.add_argument("checkpoint", metavar="RUN_DIR_OR_STATE")
    sample.add_argument("--game", help="the game to draw (conditional models); default: "
                        "every game, in blocks")
    sample.add_argument("--n", type=int, default=64, help="images in the grid")
    sample.add_argument("--out", default="grid.png", help="PNG path")
    sample.add_argument("--seed", type=int, default=0, help="noise seed")
    score = cmds.add_parser("score", help="quality numbers of a checkpoint (JSON)")
    score.add_argument("checkpoint", metavar="RUN_DIR_OR_STATE")
    score.add_argument("--by-game", action="store_true", help="also the CFD ratio with "
                       "each game's samples swapped for copies of its training frames: "
                       "the game whose swap lowers it most carries the distance")
    for p in (sample, score):
        p.add_argument("--last", action="store_true", help="the last epoch's generator "
                       "instead of the one the run kept as its best (quality.keep_best)")


def run(args: argparse.Namespace) -> int:
    if args.overrides and args.gan_command in ("sample", "score"):
        raise UserError(f"raydqn gan {args.gan_command} takes no config overrides "
                        f"({' '.join(args.overrides)})")
    if args.gan_command in ("data", "train", "calibrate"):
        started = time.time()  # train.budget_minutes counts the frames and judge too
        overrides = list(args.overrides)
        if getattr(args, "address", None):
            overrides.append(f"ray.address={args.address}")
        from dqn.schema import load_config
        from learner.gan.config import GanConfig

        cfg = load_config(args.preset, overrides, GanConfig)
        if args.gan_command == "train":
            from learner.train_job import check_resume

            from learner.gan.state import GanState

            check_resume(cfg, GanState, lambda state: {"model": state.config["model"],
                                                       "data": state.config["data"]},
                         only={"data": ("image_size", "games", "image_folder")})
        files = prepare(cfg)
        if args.gan_command == "data":
            print(json.dumps(files._asdict()))
        elif args.gan_command == "calibrate":
            print(json.dumps(calibrate(cfg, files)))
        else:
            print(json.dumps(train(cfg, files, started)))
    elif args.gan_command == "sample":
        print(sample(Path(args.checkpoint), args.game, args.n, Path(args.out), args.seed,
                     args.last))
    else:
        print(json.dumps(score(Path(args.checkpoint), args.last, args.by_game)))
    return 0


def prepare(cfg: GanConfig, progress: bool = True) -> DataFiles:
    """The frames .npz and the trained classifier, built or found in the cache."""
    from learner.gan.data import dataset_file
    from learner.gan.quality import judge_file
    from learner.gan.job import DataFiles

    frames = dataset_file(cfg.frame_plan(), cfg.data.image_folder,
                          Path(cfg.data.cache_dir), progress)
    judge = judge_file(frames, cfg.data.heldout_fraction, cfg.run.seed,
                       cfg.quality.classifier_updates, cfg.quality.classifier_width)
    return DataFiles(str(frames), str(judge))


def train(cfg: GanConfig, files: DataFiles, started: float | None = None
          ) -> dict[str, float]:
    """Run the job; the last reported metrics (quality included), printed as a line.
    `started` (time.time()): when the command began, for train.budget_minutes."""
    from learner.gan.job import make_train_fn
    from learner.gan.lines import format_best, format_quality
    from learner.train_job import run_job

    result = run_job(make_train_fn(files, started), cfg)
    metrics = dict(result.metrics or {})
    print(f"final quality: {format_quality(metrics)}", flush=True)
    if "best/epoch" in metrics:
        print(f"kept generator: {format_best(metrics)}", flush=True)
    return metrics


def calibrate(cfg: GanConfig, files: DataFiles) -> dict[str, dict[str, float]]:
    """learner.gan.quality.references on the run's own judge and splits: CFD and ratio of each."""
    from learner.gan.data import load_frames, split_heldout
    from learner.gan.quality import Judge, load_judge, references

    train_frames, heldout = split_heldout(load_frames(Path(files.frames)),
                                          cfg.data.heldout_fraction, cfg.run.seed)
    judge = Judge(load_judge(Path(files.judge)), heldout, cfg.run.seed,
                  cfg.quality.samples, cfg.quality.splits)
    refs = references(judge, train_frames, cfg.run.seed)
    splits = judge.baseline_splits
    refs.update({f"half A, the closest of {len(splits)} splits": float(splits.min()),
                 f"half A, the farthest of {len(splits)} splits": float(splits.max())})
    return {name: {"cfd": cfd, "ratio": cfd / judge.baseline} for name, cfd in refs.items()}


def _load_gan(path: Path, last: bool = False
              ) -> tuple[GanConfig, Generator, GanState, int]:
    """The run's config, its generator (the kept best one unless `last` or the run
    kept none; else the moving average of the weights when the run kept one, else the
    live weights), the checkpoint state, and the epoch whose weights it drew."""
    import torch

    from dqn.checkpoint import load_weights
    from dqn.schema import build_config
    from learner.gan.config import GanConfig
    from learner.gan.model import Generator
    from learner.gan.state import GanState
    from learner.train_job import latest_state

    state = latest_state(path, GanState)
    cfg = build_config(state.config, GanConfig)
    g = Generator(cfg.model, cfg.data.image_size, len(state.names))
    weights = state.generator_ema if state.generator_ema is not None else state.generator
    drawn = state.epoch
    if not last and state.generator_best is not None:
        weights, drawn = state.generator_best, state.best["epoch"]
    load_weights(g, weights, path)
    # channels-last as in training: its float32 pass is 1.3x faster, the same samples
    return cfg, g.to(memory_format=torch.channels_last).eval(), state, drawn


def sample(path: Path, game: str | None, n: int, out: Path, seed: int,
           last: bool = False) -> Path:
    import numpy as np
    import torch

    from learner.gan.model import generate
    from learner.gan.quality import image_grid, write_png

    if n < 1:
        raise UserError(f"--n {n} must be at least 1")
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {str(out)!r} must name a .png file")
    cfg, g, state, _ = _load_gan(path, last)
    names = tuple(state.names)
    if game is not None and not cfg.model.conditional:
        raise UserError(f"--game {game!r}: this model is unconditional (it draws every "
                        f"game at random); leave --game out")
    if game is not None and game not in names:
        raise UserError(f"--game {game!r} is not one this model learned; choose one of "
                        f"{', '.join(names)}")
    z = torch.randn(n, cfg.model.latent_size, generator=torch.Generator().manual_seed(seed))
    labels = None
    if cfg.model.conditional:
        labels = (torch.full((n,), names.index(game)) if game is not None
                  else torch.arange(n) * len(names) // n)
    images = generate(g, z, labels).numpy()
    return write_png(image_grid(images, columns=int(np.ceil(np.sqrt(n)))), out)


def checkpoint_judge(cfg: GanConfig, state: GanState) -> tuple[FrameSet, Judge]:
    """The training frames of a checkpoint's run and the judge of its held-out frames
    (as the run had them); one line if either file is gone."""
    from learner.gan.data import load_frames, split_heldout
    from learner.gan.quality import Judge, load_judge

    files = state.files
    for kind in ("frames", "judge"):
        if not Path(files[kind]).is_file():
            raise UserError(f"the checkpoint's {kind} file {files[kind]!r} is gone; rerun "
                            f"`raydqn gan data` with the run's config to rebuild it")
    train, heldout = split_heldout(load_frames(Path(files["frames"])),
                                   cfg.data.heldout_fraction, cfg.run.seed)
    return train, Judge(load_judge(Path(files["judge"])), heldout, cfg.run.seed,
                        cfg.quality.samples, cfg.quality.splits)


def score(path: Path, last: bool = False, by_game: bool = False) -> dict[str, float]:
    """The quality numbers of a checkpoint's generator (see `_load_gan`), judged on its
    own held-out frames; `drawn_epoch` names the epoch whose weights were scored. With
    `by_game`, also `by_game/NAME`: the CFD ratio with that game's samples swapped for
    copies of its training frames (`Judge.game_copied`)."""
    from learner.gan.quality import nchw, predict
    from learner.gan.job import generator_draws, score_draws

    cfg, g, state, drawn = _load_gan(path, last)
    if by_game and not cfg.model.conditional:
        raise UserError("--by-game needs a conditional model: this one "
                        "(model.conditional=false) chooses its own games")
    train, judge = checkpoint_judge(cfg, state)
    draws = generator_draws(cfg, judge, g)
    quality = score_draws(cfg, judge, draws)
    out = {"epoch": state.epoch, "g_updates": state.g_updates, "drawn_epoch": drawn,
           **quality.metrics()}
    if by_game:
        copies = predict(judge.model, nchw(train.images))[0]
        for label, name in enumerate(judge.names):
            cfd = judge.game_copied(quality.feats, label, copies[train.labels == label],
                                    cfg.run.seed)
            out[f"by_game/{name}"] = cfd / judge.baseline
    return out
