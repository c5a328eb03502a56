"""The DQN trainer's typed, validated configuration: one frozen dataclass per component.

Presets are YAML files in `configs/` that list only what differs from the defaults
below; command-line overrides (`replay.capacity_transitions=100000`) are applied on
top. Everything is validated before anything starts: an unknown key, a wrong type,
an out-of-range value or an unknown game raises `UserError` with one line naming the
key, the value and what is allowed (the machinery, shared with the Ray Train jobs'
configs, is `dqn.schema`).

Units live in the names: `env_steps` (one agent action; 4 emulator frames on Atari),
`frames` (emulator frames), `updates` (learner gradient steps), `transitions`.
The defaults are the Atari settings of Nature DQN / Dopamine, with double Q and
3-step returns on; each departure from the paper says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dqn import schema
from dqn.errors import UserError
from dqn.schema import PRECISIONS, ConfigRoot, opt, run_name_opt, suggest

CLASSIC_CONTROL = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")


@dataclass(frozen=True)
class EnvConfig:
    id: str = opt("pong", "ALE game in snake_case (pong, breakout, ms_pacman, ...) or "
                  "a classic-control id (CartPole-v1, Acrobot-v1, MountainCar-v0)")
    num_envs: int = opt(8, "environments stepped together in one vector env", lo=1)
    sticky_action_prob: float = opt(0.25, "repeat-previous-action probability "
                                    "(Machado et al. 2018)", lo=0.0, hi=1.0)
    noop_max: int = opt(30, "up to this many no-op actions at reset", lo=0)
    frame_skip: int = opt(4, "emulator frames per env step, max-pooled over the last two", lo=1)
    frame_stack: int = opt(4, "frames stacked into one observation", lo=1)
    clip_rewards: bool = opt(True, "train on sign(reward); scores stay unclipped")
    life_loss_terminal: bool = opt(False, "treat a lost life as terminal for training only")
    max_episode_frames: int = opt(108_000, "episode cap in emulator frames (30 min at 60 Hz)",
                                  lo=1)

    @property
    def is_atari(self) -> bool:
        return self.id not in CLASSIC_CONTROL

    @property
    def frames_per_env_step(self) -> int:
        """Emulator frames an env step advances (the frame skip on Atari, else 1)."""
        return self.frame_skip if self.is_atari else 1


@dataclass(frozen=True)
class NetworkConfig:
    torso: str = opt("nature", "convolutions for frames: nature (Mnih et al. 2015: 32x8x8/4, "
                     "64x4x4/2, 64x3x3/1, 512 hidden) or nips2013 (Mnih et al. 2013: "
                     "16x8x8/4, 32x4x4/2, 256 hidden; about 3x fewer operations)",
                     choices=("nature", "nips2013"))
    dueling: bool = opt(False, "dueling value/advantage head (Wang et al. 2016)")
    conv1_init: str = opt("torch", "first conv layer's initial weights: torch (PyTorch's "
                          "default) or zero_sum (each filter's weights shifted to sum to zero "
                          "and its bias made positive: on a flat background, most of an Atari "
                          "frame, every filter then fires a little and none starts dormant)",
                          choices=("torch", "zero_sum"))
    mlp_hidden: tuple[int, ...] = opt((256, 256), "hidden sizes of the MLP used for "
                                      "vector observations")


@dataclass(frozen=True)
class ReplayConfig:
    capacity_transitions: int = opt(1_000_000, "transitions kept; one frame each", lo=16)
    prioritized: bool = opt(False, "proportional prioritized replay (Schaul et al. 2016)")
    priority_exponent: float = opt(0.6, "alpha: how strongly priorities skew sampling",
                                   lo=0.0, hi=1.0)
    importance_exponent_start: float = opt(0.4, "beta at the start; annealed to 1 by the "
                                           "end of training", lo=0.0, hi=1.0)
    learning_starts_env_steps: int = opt(20_000, "env steps collected before the first "
                                         "update (80K frames, as Dopamine)", lo=1)


@dataclass(frozen=True)
class AgentConfig:
    gamma: float = opt(0.99, "discount per env step", lo=0.0, hi=1.0)
    n_step: int = opt(3, "steps in the bootstrapped return (Rainbow uses 3; Nature 1)", lo=1)
    double_q: bool = opt(True, "double DQN target (van Hasselt et al. 2016)")
    batch_size: int = opt(32, "transitions per learner update", lo=1)
    learning_rate: float = opt(6.25e-5, "Adam step size (Rainbow / Dopamine)", lo=0.0)
    adam_eps: float = opt(1.5e-4, "Adam epsilon (Rainbow / Dopamine)", lo=0.0)
    lr_end: float | None = opt(None, "Adam step size at the end of a linear decay from "
                               "learning_rate; null keeps learning_rate throughout", lo=0.0)
    lr_decay_start_env_steps: int = opt(0, "env steps at which the decay to lr_end starts",
                                        lo=0)
    lr_decay_end_env_steps: int = opt(0, "env steps at which lr_end is reached (the learner "
                                      "counts learning_starts + updates x "
                                      "update_every_env_steps)", lo=0)
    lr_end_after_eval_return: float | None = opt(
        None, "instead of the env-step decay: learning_rate until an in-training evaluation "
        "averages at least this return, lr_end from then on; null: the env-step decay")
    recycle_dormant_every_updates: int = opt(
        0, "ReDo (Sokar et al. 2023): every this many updates, the online network's dormant "
        "units (below 0.025 of their layer's mean activation on the batch) get fresh incoming "
        "and zero outgoing weights; 0: never", lo=0)
    huber_delta: float = opt(1.0, "Huber loss threshold", lo=0.0)
    grad_clip_norm: float = opt(10.0, "global gradient-norm clip; 0 turns it off", lo=0.0)
    update_every_env_steps: int = opt(4, "env steps per learner update (Nature: 4)", lo=1)
    target_update_period_updates: int = opt(2_000, "learner updates between target syncs "
                                            "(8K env steps at 4 per update, as Dopamine)",
                                            lo=1)
    precision: str = opt("float32", "the learner's passes: float32, bfloat16 (autocast; "
                         "weights, Adam and the loss stay float32; a layer torch cannot run "
                         "in bfloat16 here runs in float32) or auto (bfloat16 on a CPU with "
                         "AMX tiles)", choices=PRECISIONS)


@dataclass(frozen=True)
class ExploreConfig:
    schedule: str = opt("linear", "linear: one eps decayed over env steps (Nature); apex: "
                        "a fixed eps_i per env across all collectors (Ape-X)",
                        choices=("linear", "apex"))
    apex_base_eps: float = opt(0.4, "Ape-X eps_i = base^(1 + alpha i / (N - 1))", lo=0.0, hi=1.0)
    apex_alpha: float = opt(7.0, "Ape-X exponent spread", lo=0.0)
    eps_start: float = opt(1.0, "epsilon at the first env step", lo=0.0, hi=1.0)
    eps_end: float = opt(0.01, "epsilon after the decay", lo=0.0, hi=1.0)
    eps_decay_env_steps: int = opt(250_000, "env steps of the linear decay (1M frames)", lo=1)
    eval_eps: float = opt(0.001, "epsilon of evaluation episodes (Machado et al.)",
                          lo=0.0, hi=1.0)


@dataclass(frozen=True)
class RunConfig:
    name: str = run_name_opt("dqn")
    out_dir: str = opt("runs", "folder holding one sub-folder per run")
    seed: int = opt(0, "seed for envs, networks, replay and exploration", lo=0)
    total_env_steps: int = opt(10_000_000, "env steps to train for (40M frames)", lo=1)
    device: str = opt("auto", "learner device: auto picks cuda when present",
                      choices=("auto", "cpu", "cuda"))
    eval_every_env_steps: int = opt(250_000, "env steps between evaluations", lo=1)
    eval_episodes: int = opt(10, "episodes per evaluation", lo=1)
    stop_at_eval_return: float | None = opt(None, "stop once an evaluation's mean return "
                                            "reaches this; null trains to the end")
    log_every_env_steps: int = opt(10_000, "env steps between metric lines", lo=1)
    checkpoint_every_env_steps: int = opt(250_000, "env steps between checkpoints of the "
                                          "distributed trainer", lo=1)
    checkpoint_replay: bool = opt(True, "the distributed trainer saves replay beside each "
                                  "checkpoint (frames once, only what changed, in the "
                                  "background): a resumed run, or a replay shard Ray "
                                  "restarted, starts from it instead of refilling")


@dataclass(frozen=True)
class RayConfig:
    address: str | None = schema.address_opt()
    num_collectors: int = opt(2, "collector actors, each stepping env.num_envs envs", lo=1)
    num_replay_shards: int = opt(1, "replay actors; capacity is split evenly", lo=1)
    chunk_env_steps: int = opt(32, "vector steps per collector call; each sends "
                               "env.num_envs x this frames to its shard", lo=1)
    publish_every_updates: int = opt(100, "learner updates between weight publications",
                                     lo=1)
    prefetch_batches: int = opt(4, "sampled batches the learner keeps ready", lo=1)
    samples_in_flight: int = opt(2, "sample requests the learner keeps outstanding, over the "
                                 "shards in turn: a shard gathers and ships the next batch "
                                 "while the learner stages the last one", lo=1)
    rate_limit: bool = opt(True, "hold sampling to agent.batch_size / "
                           "agent.update_every_env_steps per inserted transition, blocking "
                           "whichever side runs ahead")
    collector_cpus: float = opt(0.5, "CPUs reserved per collector", lo=0.0)
    replay_cpus: float = opt(0.0, "CPUs reserved per replay shard (mostly memory)", lo=0.0)
    learner_cpus: float = opt(1.0, "CPUs reserved for the learner (its torch threads)",
                              lo=0.0)
    learner_gpus: float | None = opt(None, "GPUs for the learner; null takes 1 when the "
                                     "cluster has one", lo=0.0)
    learner_resource: str | None = opt(None, "a custom node resource the learner needs, to "
                                       "pin it to nodes started with --resources")
    evaluator_nice: int = opt(19, "the evaluator actor's niceness, at least (Ray starts "
                              "workers at 15 on Linux; 19 is the lowest priority): "
                              "in-training evaluations take the CPU that the learner and "
                              "collectors leave", lo=0, hi=19)

    @property
    def learner_threads(self) -> int:
        """The learner's torch intra-op threads: its whole reserved CPUs, at least one."""
        return max(1, int(self.learner_cpus))


@dataclass(frozen=True)
class Config(ConfigRoot):
    """The DQN trainer's configuration (presets directly in configs/)."""

    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    run: RunConfig = field(default_factory=RunConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def check(self) -> None:
        _check_cross_fields(self)


def preset_names() -> list[str]:
    return schema.preset_names(Config)


def load_config(preset: str = "laptop", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the preset (a name in configs/ or a YAML path), then overrides."""
    return schema.load_config(preset, overrides, Config)


def build_config(raw: dict[str, Any]) -> Config:
    return schema.build_config(raw, Config)


def _check_cross_fields(config: Config) -> None:
    env = config.env
    if env.is_atari:
        from ale_py import roms  # imported here: only Atari configs need the ROM list

        games = roms.get_all_rom_ids()
        if env.id not in games:
            hint = suggest(env.id, games)
            raise UserError(f"config env.id = {env.id!r} is not a game ale-py ships{hint};"
                            f" use a snake_case ROM name (pong, breakout, ...) or one of "
                            f"{', '.join(CLASSIC_CONTROL)}")
    if config.explore.eps_end > config.explore.eps_start:
        raise UserError(f"config explore.eps_end = {config.explore.eps_end} must not exceed "
                        f"explore.eps_start = {config.explore.eps_start}")
    agent = config.agent
    if agent.lr_end_after_eval_return is not None:
        if agent.lr_end is None:
            raise UserError(f"config agent.lr_end_after_eval_return = "
                            f"{agent.lr_end_after_eval_return} needs agent.lr_end, the step "
                            f"to switch to")
        if agent.lr_decay_start_env_steps or agent.lr_decay_end_env_steps:
            raise UserError(f"config agent.lr_end_after_eval_return = "
                            f"{agent.lr_end_after_eval_return} replaces the env-step decay: "
                            f"leave agent.lr_decay_start_env_steps and "
                            f"agent.lr_decay_end_env_steps at 0")
    elif agent.lr_end is not None and (agent.lr_decay_end_env_steps
                                       <= agent.lr_decay_start_env_steps):
        raise UserError(f"config agent.lr_decay_end_env_steps = {agent.lr_decay_end_env_steps} "
                        f"must exceed agent.lr_decay_start_env_steps = "
                        f"{agent.lr_decay_start_env_steps} when agent.lr_end is set")
    if config.replay.capacity_transitions < config.agent.batch_size:
        raise UserError(f"config replay.capacity_transitions = "
                        f"{config.replay.capacity_transitions} must be at least "
                        f"agent.batch_size = {config.agent.batch_size}")
    r = config.ray
    if r.num_replay_shards > r.num_collectors:
        raise UserError(f"config ray.num_replay_shards = {r.num_replay_shards} exceeds "
                        f"ray.num_collectors = {r.num_collectors}: collector i writes to shard "
                        f"i mod shards, so a shard without a collector would never fill")
    per_env = config.replay.capacity_transitions // env.num_envs
    needed = 4 * (env.frame_stack + config.agent.n_step + 1)
    if per_env < needed:
        raise UserError(f"config replay.capacity_transitions = "
                        f"{config.replay.capacity_transitions} leaves {per_env} per env "
                        f"stream; with env.num_envs = {env.num_envs} it must be at least "
                        f"{needed * env.num_envs}")
