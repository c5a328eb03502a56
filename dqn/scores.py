"""Human-normalized scores from the random and human reference scores used by the Ape-X,
Rainbow and R2D2 papers (55 games; `dqn/data/atari_reference_scores.csv`).

    HNS = (score - random) / (human - random)

Papers summarize many games by the median (robust to a few huge values) and the mean.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np

REFERENCE_CSV = Path(__file__).resolve().parent / "data" / "atari_reference_scores.csv"


class Reference(NamedTuple):
    random: float
    human: float


def _key(game: str) -> str:
    """The table spells games without separators: ms_pacman -> mspacman."""
    return game.lower().replace("_", "").replace("-", "")


@functools.cache
def reference_scores() -> dict[str, Reference]:
    with REFERENCE_CSV.open() as f:
        return {_key(row["game"]): Reference(float(row["random"]), float(row["human"]))
                for row in csv.DictReader(f)}


def human_normalized(game: str, score: float) -> float | None:
    """HNS of `score` on `game`, or None for a game outside the reference table."""
    ref = reference_scores().get(_key(game))
    if ref is None:
        return None
    return (score - ref.random) / (ref.human - ref.random)


def summarize(hns: list[float | None]) -> dict[str, float | None]:
    known = [h for h in hns if h is not None]
    if not known:
        return {"median_hns": None, "mean_hns": None, "games_with_reference": 0}
    return {"median_hns": float(np.median(known)), "mean_hns": float(np.mean(known)),
            "games_with_reference": len(known)}
