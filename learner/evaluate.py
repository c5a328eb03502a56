"""The `evaluate` command: score a checkpoint under a stated protocol.

Protocols (Machado et al. 2018 and Mnih et al. 2015): both play whole games with
unclipped scores, no life-loss terminals, up to 30 no-op starts and the 108,000-frame
cap; `machado` (the default) acts with eps = 0.001 under sticky actions 0.25, `nature`
with eps = 0.05 and no sticky actions. Episodes are spread over Ray evaluator actors
(`--workers`; 0 plays them in this process), each worker with its own seed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dqn.checkpoint import Checkpoint, check_game, load_weights
from dqn.config import Config, build_config
from dqn.envs import make_vector_env
from dqn.errors import UserError
from dqn.evaluation import evaluate, visited_observations
from dqn.networks import DORMANT_TAU, QNetwork, dormant_fractions, unit_counts
from dqn.scores import human_normalized, summarize

PROTOCOLS = {
    "machado": {"eps": 0.001, "sticky_action_prob": 0.25},
    "nature": {"eps": 0.05, "sticky_action_prob": 0.0},
}
EPISODE_CAP_FRAMES = 108_000


def resolve_checkpoint(path: str) -> Path:
    """A checkpoint file, or a run folder (its latest checkpoint)."""
    p = Path(path)
    return p / "checkpoint.pt" if p.is_dir() else p


def load_agent(path: Path, game: str | None) -> tuple[Config, QNetwork]:
    state = Checkpoint.load(path)
    try:
        cfg = build_config(state.config)
    except UserError as err:
        raise UserError(f"checkpoint {str(path)!r} holds a config this version cannot read: "
                        f"{err}") from None
    if game is not None:
        check_game(state, path, game)
    probe = make_vector_env(cfg.env, num_envs=1)
    net = QNetwork(probe.obs_shape, probe.num_actions, cfg.network).eval()
    probe.close()
    load_weights(net, state.learner["online"], path)
    return cfg, net


def evaluate_checkpoint(path: Path, *, episodes: int, workers: int, protocol: str,
                        eps: float | None = None, seed: int = 0,
                        game: str | None = None) -> dict[str, Any]:
    if episodes < 1:
        raise UserError(f"--episodes {episodes} must be at least 1")
    if workers < 0:
        raise UserError(f"--workers {workers} must be 0 (this process) or more")
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    cfg, net = load_agent(path, game)
    rules = dict(PROTOCOLS[protocol], eps=PROTOCOLS[protocol]["eps"] if eps is None else eps)
    env_cfg = dataclasses.replace(cfg.env, sticky_action_prob=rules["sticky_action_prob"],
                                  noop_max=30, life_loss_terminal=False,
                                  max_episode_frames=EPISODE_CAP_FRAMES)
    if not cfg.env.is_atari:
        env_cfg = cfg.env
    played = (_play_here(net, env_cfg, episodes, rules["eps"], seed) if workers == 0 else
              _play_on_ray(dataclasses.replace(cfg, env=env_cfg), net, episodes,
                           rules["eps"], seed, workers))
    returns = [score for score, _ in played]
    mean = float(np.mean(returns))
    frame_skip = env_cfg.frame_skip if env_cfg.is_atari else 1
    return {
        "game": cfg.env.id, "checkpoint": str(path),
        "protocol": {"name": protocol, "eps": rules["eps"],
                     "sticky_action_prob": env_cfg.sticky_action_prob,
                     "noop_max": env_cfg.noop_max, "life_loss_terminal": False,
                     "rewards": "unclipped", "max_episode_frames": env_cfg.max_episode_frames,
                     "seed": seed},
        "episodes": len(returns), "returns": returns,
        "lengths": [length for _, length in played],
        "mean": mean, "median": float(np.median(returns)), "std": float(np.std(returns)),
        "min": float(np.min(returns)), "max": float(np.max(returns)),
        "human_normalized": human_normalized(cfg.env.id, mean),
        "frames": int(sum(length for _, length in played) * frame_skip),
    }


def _play_here(net, env_cfg, episodes: int, eps: float, seed: int) -> list[tuple[float, int]]:
    return [(e.score, e.env_steps) for e in evaluate(net, env_cfg, episodes, eps, seed=seed)]


def _play_on_ray(cfg: Config, net, episodes: int, eps: float, seed: int,
                 workers: int) -> list[tuple[float, int]]:
    import ray

    from actors.evaluator import Evaluator
    from learner.cluster import init_ray

    owns = init_ray(cfg)
    try:
        workers = min(workers, episodes)
        share = [episodes // workers + (i < episodes % workers) for i in range(workers)]
        weights = ray.put(net.state_dict())
        actors = [Evaluator.options(num_cpus=0).remote(cfg, net.obs_shape, net.num_actions)
                  for _ in range(workers)]
        reports = ray.get([a.evaluate.remote(weights, 0, 0, seed + 1_000_003 * i, n, eps)
                           for i, (a, n) in enumerate(zip(actors, share))])
        for actor in actors:
            ray.kill(actor)
    finally:
        if owns:
            ray.shutdown()
    return [(s, n) for r in reports for s, n in zip(r.returns, r.lengths)]


def _single_env(cfg: Config, protocol: dict):
    """The env under an evaluation protocol, for one-env play (video, t-SNE, dormant units)."""
    if not cfg.env.is_atari:
        return cfg.env
    return dataclasses.replace(cfg.env, sticky_action_prob=protocol["sticky_action_prob"],
                               max_episode_frames=EPISODE_CAP_FRAMES)


def dormant_report(path: Path, game: str | None, protocol: dict, states: int) -> dict:
    """Shares of dormant units of the checkpoint's network, and of the network its run
    started from (learning.initial_network; runs before 2026-11-25 drew their initial
    weights unseeded, so for them it is one such draw), on `states` states the agent visits
    under the protocol: which units training left dead, and which were dead from the start."""
    import torch

    from dqn.learning import initial_network

    cfg, net = load_agent(path, game)
    env_cfg = _single_env(cfg, protocol)
    obs = torch.as_tensor(visited_observations(net, env_cfg, states, protocol["eps"],
                                               protocol["seed"]))
    fresh = initial_network(cfg, net.obs_shape, net.num_actions).eval()
    return {"states": states, "tau": DORMANT_TAU, "trained": dormant_fractions(net, obs),
            "initial": dormant_fractions(fresh, obs),
            "units": unit_counts(net)}


def summary_table(results: list[dict[str, Any]]) -> str:
    """One row per evaluated checkpoint, then the median and mean HNS, as papers report."""
    head = f"{'game':<16}{'episodes':>9}{'mean':>10}{'median':>10}{'std':>9}{'min':>9}" \
           f"{'max':>9}{'HNS':>8}  checkpoint"
    rows = [head, "-" * len(head)]
    for r in results:
        hns = "-" if r["human_normalized"] is None else f"{r['human_normalized']:.2f}"
        rows.append(f"{r['game']:<16}{r['episodes']:>9}{r['mean']:>10.1f}{r['median']:>10.1f}"
                    f"{r['std']:>9.1f}{r['min']:>9.1f}{r['max']:>9.1f}{hns:>8}  "
                    f"{r['checkpoint']}")
    s = summarize([r["human_normalized"] for r in results])
    if s["games_with_reference"]:
        rows.append(f"median HNS {s['median_hns']:.3f} · mean HNS {s['mean_hns']:.3f} over "
                    f"{s['games_with_reference']} game(s) with reference scores")
    for r in results:
        if "dormant" in r:
            d = r["dormant"]
            layers = ", ".join(
                f"{name} {round(d['trained'][name] * n)}/{n} (at init {round(d['initial'][name] * n)})"
                for name, n in d["units"].items())
            rows.append(f"dormant units on {d['states']} visited states (tau {d['tau']}): "
                        f"{layers}; all {d['trained']['all']:.1%} (at init "
                        f"{d['initial']['all']:.1%})  {r['checkpoint']}")
    p = results[0]["protocol"]
    rows.append(f"protocol {p['name']}: eps {p['eps']}, sticky actions "
                f"{p['sticky_action_prob']}, up to {p['noop_max']} no-ops, unclipped scores, "
                f"no life-loss terminals, cap {p['max_episode_frames']:,} frames")
    return "\n".join(rows)


def evaluate_command(checkpoints: list[str], *, episodes: int, workers: int, protocol: str,
                     eps: float | None, seed: int, game: str | None, json_path: str | None,
                     video: str | None, tsne: str | None, tsne_states: int,
                     dormant: int = 0) -> list[dict]:
    """Check every input first, then play; returns the per-checkpoint results."""
    import json

    paths = [resolve_checkpoint(c) for c in checkpoints]
    if (video or tsne) and len(paths) > 1:
        raise UserError("--video and --tsne take a single checkpoint")
    if tsne_states < 10:
        raise UserError(f"--tsne-states {tsne_states} must be at least 10")
    if dormant < 0:
        raise UserError(f"--dormant {dormant} must be 0 (off) or a number of states")
    for option, value, suffix in (("--video", video, ".mp4"), ("--tsne", tsne, ".png"),
                                  ("--json", json_path, ".json")):
        if value is not None and not value.endswith(suffix):
            raise UserError(f"{option} {value!r} must name a {suffix} file")
        if value is not None:
            check_output_path(option, Path(value))
    for path in paths:
        cfg, _ = load_agent(path, game)  # a missing or foreign checkpoint fails before any play
        if video and not cfg.env.is_atari:
            _check_classic_video(cfg.env.id)
    results = [evaluate_checkpoint(p, episodes=episodes, workers=workers, protocol=protocol,
                                   eps=eps, seed=seed, game=game) for p in paths]
    if dormant:
        for path, result in zip(paths, results):
            result["dormant"] = dormant_report(path, game, result["protocol"], dormant)
    media = {}
    if video or tsne:
        cfg, net = load_agent(paths[0], game)
        rules_eps = results[0]["protocol"]["eps"]
        env_cfg = _single_env(cfg, results[0]["protocol"])
        if video:
            from dqn.video import record_episode

            clip = record_episode(net, env_cfg, rules_eps, seed, Path(video))
            results[0]["video"] = {"path": video, "frames": clip.frames, "score": clip.score,
                                   "env_steps": clip.env_steps}
            media["video"] = Path(video)
        if tsne:
            from dqn.tsne import tsne_png, visited_states

            feats, values = visited_states(net, env_cfg, tsne_states, rules_eps, seed)
            tsne_png(feats, values, Path(tsne), f"{cfg.env.id}: last hidden layer, "
                     f"{tsne_states} states, coloured by max Q", seed)
            results[0]["tsne"] = {"path": tsne, "states": tsne_states}
            media["tsne"] = Path(tsne)
    if json_path:
        body = results[0] if len(results) == 1 else {
            "runs": results, **summarize([r["human_normalized"] for r in results])}
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(body, indent=2))
    _log_to_wandb(results, media, paths[0].parent)
    return results


def check_output_path(option: str, path: Path) -> None:
    """A file the command will write: not a folder, and under folders that exist or can
    be made and written to; else one line, before anything is played."""
    if path.is_dir():
        raise UserError(f"{option} {str(path)!r} is a folder; name a file in it")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{option} {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{option} {str(path)!r}: cannot write in {str(folder)!r}")


def _check_classic_video(env_id: str) -> None:
    """gymnasium draws classic-control envs with pygame, which this project does not
    install (Atari games are drawn by the emulator)."""
    import importlib.util

    if importlib.util.find_spec("pygame") is None:
        raise UserError(f"--video of {env_id} needs pygame to draw it (pip install pygame); "
                        f"Atari games record without it")


def _log_to_wandb(results: list[dict], media: dict[str, Path], run_dir: Path) -> None:
    """One W&B run of job_type 'evaluate' per command (offline without an API key)."""
    from dqn.metrics import wandb_mode

    mode = wandb_mode()
    if mode == "disabled":
        return
    try:
        import wandb

        run = wandb.init(project="raydqn", job_type="evaluate", group=results[0]["game"],
                         name=f"evaluate-{results[0]['game']}", mode=mode, dir=str(run_dir),
                         config={"protocol": results[0]["protocol"]},
                         settings=wandb.Settings(console="off", silent=True))
        for r in results:
            run.log({"eval/mean_return": r["mean"], "eval/median_return": r["median"],
                     "eval/human_normalized": r["human_normalized"]})
        if "video" in media:
            run.log({"eval/video": wandb.Video(str(media["video"]), format="mp4")})
        if "tsne" in media:
            run.log({"eval/tsne": wandb.Image(str(media["tsne"]))})
        run.finish()
    except Exception as err:  # logging never fails an evaluation
        print(f"warning: W&B logging failed ({type(err).__name__}: {err})", file=sys.stderr)
