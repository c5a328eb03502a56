"""Joining a Ray cluster, or starting an embedded one: the same rule for every command."""

from __future__ import annotations

import os
import socket
from typing import Any

import ray

from dqn.errors import UserError

CONNECT_TIMEOUT_S = 5.0


def init_ray(cfg: Any, *, log_to_driver: bool = False, dashboard: bool = False) -> bool:
    """Join `cfg.ray.address` (or RAY_ADDRESS), else start an embedded local Ray.

    Ray Train needs the dashboard (its state API watches the Train controller).
    Returns whether this process started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=log_to_driver)
        except ConnectionError as err:
            raise UserError(f"no Ray cluster at {address!r}: "
                            f"{str(err).strip().splitlines()[0]}") from None
    else:
        ray.init(include_dashboard=dashboard, log_to_driver=log_to_driver)
    return True


def _check_reachable(address: str) -> None:
    """A host:port address (after any ray:// scheme) must accept a connection within
    CONNECT_TIMEOUT_S; ray.init would otherwise retry it for minutes."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return  # 'auto' and the like: ray.init finds the cluster or says it found none
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise UserError(f"no Ray cluster at {address!r}: cannot connect to {host}:{port} "
                        f"({err.strerror or type(err).__name__})") from None
