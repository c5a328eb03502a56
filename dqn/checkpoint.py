"""Checkpoint files: one typed record per trainer, one torch file per save, written
atomically (temp file + rename).

Each kind is a dataclass whose `kind` is stored in the file, so a reader knows what it
holds without guessing from its keys:

- `SerialCheckpoint`: the single-process trainer's run (`raydqn train --serial`): config,
  learner (online and target networks, optimizer, counters, step size), env steps, the
  evaluations so far and the RNG states, so the run resumes exactly where it stopped.
- `DistributedCheckpoint`: the distributed trainer's run: config, learner, env steps,
  episodes and collector restarts.
- `BestWeights`: the online network behind the best in-training evaluation so far
  (`best.pt`): `raydqn evaluate` reads it, a run cannot resume from it.

`Checkpoint.load` reads any of them (every one holds a config and an online network);
`SerialCheckpoint.load` and the others read their own kind only, and a file of another
kind is one clear line. The Ray Train jobs keep their states in records of their own
(`Record` subclasses: learner/gan/state.py, learner/lm/state.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from dqn.errors import UserError

FORMAT = "raydqn-checkpoint-v2"
RESUME_HINT = "; pick another run.name"  # what a run that cannot resume may do instead
C = TypeVar("C", bound="Record")


KINDS: dict[str, type["Record"]] = {}   # every kind of record, by the name in its files


@dataclass
class Record:
    """A typed checkpoint file: a dataclass whose `kind` is stored in the file beside
    its fields (and `writer`, so that even a reader that lacks the kind can name what
    wrote it). Every subclass with a kind of its own is registered in KINDS."""

    kind: ClassVar[str] = ""
    writer: ClassVar[str] = "raydqn"       # what writes this kind, for error messages

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            KINDS[cls.kind] = cls

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        torch.save({"format": FORMAT, "kind": self.kind, "writer": self.writer, **fields},
                   tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls: type[C], path: Path, hint: str = "") -> C:
        """The record at `path`, of this class or one of its subclasses; a missing,
        corrupt or foreign file, or one of another kind, is a `UserError`."""
        path = Path(path)
        state = _read(path)
        kind = KINDS.get(state.get("kind"))
        if kind is None or not issubclass(kind, cls):
            by = kind.writer if kind is not None else state.get("writer", "something else")
            raise UserError(f"checkpoint {str(path)!r} was written by {by}, not "
                            f"{cls.writer}{hint}")
        fields = dataclasses.fields(kind)
        missing = [f.name for f in fields if f.name not in state
                   and f.default is dataclasses.MISSING]   # a field added since has one
        if missing:
            raise UserError(f"checkpoint {str(path)!r} lacks {missing[0]!r}: it is damaged")
        return kind(**{f.name: state[f.name] for f in fields if f.name in state})


@dataclass
class Checkpoint(Record):
    """What every DQN checkpoint holds: enough to play (config and online network)."""

    writer: ClassVar[str] = "a DQN trainer"
    config: dict[str, Any]                # Config.to_dict()
    learner: dict[str, Any]               # DQNLearner.state_dict(); BestWeights: online only
    env_steps: int

    @property
    def game(self) -> str:
        return self.config["env"]["id"]


@dataclass
class SerialCheckpoint(Checkpoint):
    kind: ClassVar[str] = "serial"
    writer: ClassVar[str] = "the single-process trainer (--serial)"
    evaluations: list[dict]               # Evaluation._asdict() of each evaluation so far
    rng: dict                             # numpy's bit generator state
    torch_rng: torch.Tensor


@dataclass
class DistributedCheckpoint(Checkpoint):
    kind: ClassVar[str] = "distributed"
    writer: ClassVar[str] = "the distributed trainer"
    episodes: int
    collector_restarts: int
    learner_restarts: int = 0
    replay_restarts: int = 0
    evaluator_restarts: int = 0


@dataclass
class BestWeights(Checkpoint):
    kind: ClassVar[str] = "best"
    writer: ClassVar[str] = "a run's best evaluation (best.pt, which no run resumes from)"
    eval_mean_return: float
    eval_episodes: int
    weights_version: int | None = None


def best_weights(config: dict[str, Any], online: dict, *, env_steps: int,
                 returns: list[float], weights_version: int | None = None) -> BestWeights:
    return BestWeights(config, {"online": online}, env_steps,
                       float(sum(returns) / len(returns)), len(returns), weights_version)


def best_return(path: Path) -> float:
    """The evaluation mean behind an existing best checkpoint; -inf if none is readable."""
    if not Path(path).is_file():
        return -math.inf
    try:
        return float(BestWeights.load(path).eval_mean_return)
    except UserError:
        return -math.inf              # the next evaluation replaces it


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged file
        raise UserError(f"checkpoint {str(path)!r} is unreadable or corrupt "
                        f"({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"checkpoint {str(path)!r} is not a {FORMAT} file")
    return state


def check_game(checkpoint: Checkpoint, path: Path, game: str, hint: str = "") -> None:
    """A checkpoint trained on another game than `game` is a `UserError`."""
    if checkpoint.game != game:
        raise UserError(f"checkpoint {str(path)!r} was trained on {checkpoint.game!r}, not "
                        f"{game!r}{hint}")


def load_weights(module: torch.nn.Module, weights: dict, path: Path, hint: str = "") -> None:
    """`module.load_state_dict(weights)`; a shape mismatch is a `UserError`."""
    try:
        module.load_state_dict(weights)
    except RuntimeError:
        raise UserError(f"checkpoint {str(path)!r} holds a network of another shape than "
                        f"this config builds{hint}") from None
