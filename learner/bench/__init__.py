"""Every benchmark of the project, each figure beside a limit measured in the same run.

`raydqn bench WHAT` calls `run`; each WHAT is one function that returns a JSON-ready
report: `components` (replay, env: no Ray), `system` (collect, update, learner, system,
overhead),
`rllib` (RLlib's DQN beside ours), `gan` (the GAN job's update beside the same networks
built from plain torch convolutions).
"""

from __future__ import annotations

from dqn.errors import UserError

WHATS = ("replay", "env", "update", "collect", "learner", "system", "overhead", "rllib",
         "gan")


def run(what: str, preset: str | None, overrides: list[str], seconds: float | None,
        game: str, envs: int) -> dict:
    """The report of benchmark `what`; bad input is a UserError before anything starts.
    `preset` None: `conditional` for gan, `cartpole` for overhead, `laptop` for the others."""
    if preset is None:
        preset = {"gan": "conditional", "overhead": "cartpole"}.get(what, "laptop")
    if seconds is None:
        seconds = {"rllib": 300.0, "gan": 20.0}.get(what, 3.0)
    if seconds <= 0:
        raise UserError(f"--seconds {seconds} must be positive")
    if envs < 1:
        raise UserError(f"--envs {envs} must be at least 1")
    if what == "replay":
        from learner.bench.components import bench_replay

        return bench_replay(seconds)
    if what == "env":
        from learner.bench.components import bench_env

        return bench_env(game, seconds, envs)
    if what == "gan":
        from learner.bench.gan import bench_gan

        return bench_gan(preset, overrides, seconds)
    if what == "rllib":
        from learner.bench.rllib import bench_rllib

        return bench_rllib(preset, overrides, seconds)
    from dqn.config import load_config
    from learner.bench import system

    load_config(preset, overrides)  # bad input fails before Ray starts
    return getattr(system, f"bench_{what}")(preset, overrides, seconds)
