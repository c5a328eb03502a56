"""The `raydqn` command: one entry point, one subcommand per job.

    raydqn train [--preset NAME] [section.key=value ...]
    raydqn bench replay|env [--seconds S]
    raydqn presets

A user mistake prints one line on stderr and exits with code 2, before anything starts.
"""

from __future__ import annotations

import argparse
import json
import sys

from dqn.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raydqn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a DQN (single process for now)")
    train.add_argument("--preset", default="laptop", help="a configs/ preset or a YAML path")
    train.add_argument("overrides", nargs="*", metavar="section.key=value")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench = sub.add_parser("bench", help="benchmarks that print JSON")
    bench.add_argument("what", choices=("replay", "env"))
    bench.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    bench.add_argument("--game", default="pong")
    sub.add_parser("presets", help="list the presets in configs/")
    args = parser.parse_args(argv)
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
        from dqn.serial import train

        cfg = load_config(args.preset, args.overrides)
        result = train(cfg, progress=not args.no_progress)
        print(json.dumps({"env_steps": result.env_steps, "learner_updates": result.updates,
                          "evaluations": [e.mean_return for e in result.evaluations],
                          "checkpoint": str(result.checkpoint)}))
    elif args.command == "bench":
        from dqn import bench

        if args.seconds <= 0:
            raise UserError(f"--seconds {args.seconds} must be positive")
        report = (bench.bench_replay(args.seconds) if args.what == "replay"
                  else bench.bench_env(args.game, args.seconds))
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
