"""The `raydqn` command: one entry point, one subcommand per job.

    raydqn train [--preset NAME] [--serial] [--address ADDR] [section.key=value ...]
    raydqn bench replay|env [--seconds S]
    raydqn bench update|collect|learner|system|overhead|rllib|gan [--preset NAME]
                 [section.key=value ...]
    raydqn evaluate CHECKPOINT|RUN_DIR ... [--episodes 30] [--workers 2]
                   [--protocol machado|nature] [--json P] [--video P.mp4] [--tsne P.png]
                   [--dormant N]
    raydqn faults [--preset NAME] [--every-seconds 10] [--kills 8] [--kinds K,...]
                  [--seconds S] [--seed 0] [--no-driver-kill] [section.key=value ...]
    raydqn plot RUN_DIR --out curve.png
    raydqn presets

A user mistake prints one line on stderr and exits with code 2, before anything starts.
"""

from __future__ import annotations

import argparse
import json
import sys

from dqn.errors import UserError
from dqn.process import keep_freed_memory
from learner.bench import WHATS as BENCHMARKS
from learner.gan import cli as gan_cli
from learner.lm import cli as lm_cli


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the full usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="raydqn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train a DQN on Ray (collectors, replay shards, "
                           "a learner)")
    train.add_argument("--preset", default="laptop", help="a configs/ preset or a YAML path")
    train.usage = ("raydqn train [--preset NAME] [--serial] [--address ADDR] [--no-progress] "
                   "[section.key=value ...]")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--serial", action="store_true",
                       help="run env, replay and learner in this one process (no Ray)")
    train.add_argument("--address", help="Ray cluster to join, e.g. auto (sets ray.address)")
    bench = sub.add_parser("bench", help="benchmarks that print JSON")
    bench.add_argument("what", choices=BENCHMARKS)
    bench.add_argument("--preset", default=None,
                       help="preset for update, collect, learner, system, rllib (default "
                            "laptop), overhead (default cartpole) and gan (default "
                            "conditional)")
    bench.add_argument("--seconds", type=float, default=None,
                       help="time per measurement (default 3; rllib: 300 per side; gan: 20)")
    bench.add_argument("--game", default="pong", help="ALE game for `bench env`")
    bench.add_argument("--envs", type=int, default=16, help="envs in the vector env for `bench env`")
    ev = sub.add_parser("evaluate", help="score checkpoints under a stated protocol")
    ev.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                    help="checkpoint files, or run folders (their latest checkpoint)")
    ev.add_argument("--episodes", type=int, default=30, help="episodes per checkpoint")
    ev.add_argument("--workers", type=int, default=2,
                    help="Ray evaluator actors; 0 plays in this process")
    ev.add_argument("--protocol", default="machado", choices=("machado", "nature"),
                    help="machado: eps 0.001, sticky 0.25; nature: eps 0.05, no sticky")
    ev.add_argument("--eps", type=float, help="override the protocol's epsilon")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--game", help="refuse checkpoints trained on another game")
    ev.add_argument("--json", dest="json_path", metavar="PATH", help="write results as JSON")
    ev.add_argument("--video", metavar="PATH.mp4", help="record one full episode in colour")
    ev.add_argument("--tsne", metavar="PATH.png", help="t-SNE map of the last hidden layer")
    ev.add_argument("--tsne-states", type=int, default=1000, help="states in the t-SNE map")
    ev.add_argument("--dormant", type=int, default=0, metavar="STATES",
                    help="shares of dormant units (trained and at init) on this many visited "
                         "states; 0: off")
    faults = sub.add_parser("faults", help="a training run whose actors, and once its "
                            "driver, are killed as it goes; reports what it survived (JSON)")
    faults.add_argument("--preset", default="cartpole", help="a configs/ preset or a YAML path")
    faults.add_argument("--every-seconds", type=float, default=10.0,
                        help="seconds between kills")
    faults.add_argument("--kills", type=int, default=8,
                        help="actors killed in all (0 with --no-driver-kill: a run without "
                             "faults, to compare with)")
    faults.add_argument("--no-driver-kill", action="store_true",
                        help="leave the driver alone (by default it is killed once, halfway)")
    faults.add_argument("--seed", type=int, default=0, help="which actors are picked")
    faults.add_argument("--kinds", default="collector,shard,learner,evaluator",
                        help="the kinds of actor killed, in turn")
    faults.add_argument("--seconds", type=float, default=None,
                        help="stop the run after this long (SIGTERM: a final checkpoint)")
    faults.usage = ("raydqn faults [--preset NAME] [--every-seconds S] [--kills N] "
                    "[--kinds K,...] [--seconds S] [--no-driver-kill] [section.key=value ...]")
    plot = sub.add_parser("plot", help="learning curve (PNG) from a run's logged metrics")
    plot.add_argument("run_dir", help="a run folder, e.g. runs/laptop-pong")
    plot.add_argument("--out", default=None, help="PNG path (default RUN_DIR/curve.png)")
    sub.add_parser("presets", help="list the presets in configs/")
    gan_cli.add_parser(sub)
    lm_cli.add_parser(sub)
    # Overrides (section.key=value) may sit anywhere among the options.
    args, extra = parser.parse_known_args(argv)
    takes_overrides = args.command in ("train", "bench", "faults", "gan", "lm")
    unknown = [a for a in extra if not takes_overrides or "=" not in a or a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [a for a in extra if a not in unknown]
    keep_freed_memory()  # this process's own torch work (serial training, bare loops, ...)
    try:
        return _run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "presets":
        from dqn.config import preset_names

        print("\n".join(preset_names()))
    elif args.command == "train":
        from dqn.config import load_config

        overrides = args.overrides + ([f"ray.address={args.address}"] if args.address else [])
        cfg = load_config(args.preset, overrides)
        if args.serial:
            from dqn.serial import train

            result = train(cfg, progress=not args.no_progress)
            print(json.dumps({"env_steps": result.env_steps, "learner_updates": result.updates,
                              "evaluations": [e.mean_return for e in result.evaluations],
                              "checkpoint": str(result.checkpoint)}))
        else:
            from learner.driver import train_distributed

            dist = train_distributed(cfg, progress=not args.no_progress)
            print(json.dumps({"env_steps": dist.env_steps, "learner_updates": dist.updates,
                              "weights_version": dist.weights_version,
                              "collector_restarts": dist.collector_restarts,
                              "checkpoint": str(dist.checkpoint)}))
    elif args.command == "faults":
        from learner.faults import fault_run

        print(json.dumps(fault_run(
            args.preset, args.overrides, args.every_seconds, args.kills,
            not args.no_driver_kill, args.seed, kinds=tuple(args.kinds.split(",")),
            seconds=args.seconds), indent=2))
    elif args.command == "plot":
        from pathlib import Path

        from dqn.plots import learning_curve

        out = Path(args.out) if args.out else Path(args.run_dir) / "curve.png"
        if out.suffix != ".png":
            raise UserError(f"--out {str(out)!r} must name a .png file")
        print(learning_curve(Path(args.run_dir), out))
    elif args.command == "evaluate":
        from learner.evaluate import evaluate_command, summary_table

        results = evaluate_command(
            args.checkpoints, episodes=args.episodes, workers=args.workers,
            protocol=args.protocol, eps=args.eps, seed=args.seed, game=args.game,
            json_path=args.json_path, video=args.video, tsne=args.tsne,
            tsne_states=args.tsne_states, dormant=args.dormant)
        print(summary_table(results))
    elif args.command == "gan":
        return gan_cli.run(args)
    elif args.command == "lm":
        return lm_cli.run(args)
    elif args.command == "bench":
        from learner import bench

        print(json.dumps(bench.run(args.what, args.preset, args.overrides, args.seconds,
                                   args.game, args.envs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
