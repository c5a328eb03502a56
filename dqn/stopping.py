"""Ctrl-C and SIGTERM as a request to stop cleanly, so that a final checkpoint is written."""

from __future__ import annotations

import signal
import threading


class StopFlag:
    """Turns SIGTERM into a request to stop after the current step (Ctrl-C too)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle)
                              for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
