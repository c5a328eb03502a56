"""Joining a Ray cluster, or starting an embedded one: the same rule for every command."""

from __future__ import annotations

import os
from typing import Any

import ray


def init_ray(cfg: Any, *, log_to_driver: bool = False, dashboard: bool = False) -> bool:
    """Join `cfg.ray.address` (or RAY_ADDRESS), else start an embedded local Ray.

    Ray Train needs the dashboard (its state API watches the Train controller).
    Returns whether this process started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(include_dashboard=dashboard, log_to_driver=log_to_driver)
    return True
