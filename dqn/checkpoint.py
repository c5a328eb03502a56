"""Checkpoint files: one torch file per save, written atomically (temp file + rename).

A checkpoint holds the config, the online and target networks, the optimizer, the
counters and the RNG states, so a run resumes exactly where it stopped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from dqn.errors import UserError

FORMAT = "raydqn-checkpoint-v1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def save_best(path: Path, config: dict[str, Any], online: dict, *, env_steps: int,
              returns: list[float], weights_version: int | None = None) -> Path:
    """The weights behind the best in-training evaluation so far: a checkpoint that
    `raydqn evaluate` reads (config and online network) but a run cannot resume from."""
    return save_checkpoint(path, {
        "config": config, "learner": {"online": online}, "env_steps": env_steps,
        "weights_version": weights_version, "eval_mean_return": float(sum(returns) / len(returns)),
        "eval_episodes": len(returns)})


def best_return(path: Path) -> float:
    """The evaluation mean behind an existing best checkpoint; -inf if none is readable."""
    if not Path(path).is_file():
        return -math.inf
    try:
        return float(load_checkpoint(path)["eval_mean_return"])
    except (UserError, KeyError):
        return -math.inf              # the next evaluation replaces it


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's state; a missing, corrupt or foreign file is a `UserError`."""
    path = Path(path)
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


def check_game(state: dict[str, Any], path: Path, game: str, hint: str = "") -> None:
    """A checkpoint trained on another game than `game` is a `UserError`."""
    trained_on = state["config"]["env"]["id"]
    if trained_on != game:
        raise UserError(f"checkpoint {str(path)!r} was trained on {trained_on!r}, not "
                        f"{game!r}{hint}")


def load_weights(module: torch.nn.Module, weights: dict, path: Path, hint: str = "") -> None:
    """`module.load_state_dict(weights)`; a shape mismatch is a `UserError`."""
    try:
        module.load_state_dict(weights)
    except RuntimeError:
        raise UserError(f"checkpoint {str(path)!r} holds a network of another shape than "
                        f"this config builds{hint}") from None
