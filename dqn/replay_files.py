"""A FrameReplay on disk, saved incrementally: each save writes only the records added
since the last one, frames once (no stacks), and a resumed run restores them.

A folder holds, for one store:

    segment-S-B-E.npz   records B..E-1 of stream S (frame, action, reward, flags and
                        the priority each was given when it was added)
    priorities.npy      the sum tree's leaves: the priorities learned since
    state.json          what a restore reads: the layout, records written per stream,
                        the segments that hold the live window, the largest priority

A save writes its new segments first and `state.json` last (atomically), then deletes
segments whose records have all been overwritten since, so a save cut short leaves the
previous one readable. The new segments are written from the live arrays (views, no copy),
in a background thread: only records written since the save began can change under it,
so an incremental save is exact; where records of a segment were overwritten while it
was written (a full window saved from a full store), the restored window starts after
them (`oldest` per stream in state.json).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dqn.errors import UserError
from dqn.replay import FrameReplay

_SEGMENT = re.compile(r"segment-(\d+)-(\d+)-(\d+)\.npz")
_FIELDS = ("frame", "action", "reward", "terminated", "first", "last")


def layout(store: FrameReplay) -> dict[str, Any]:
    """What a restore must match: a folder is only read back into the same layout."""
    return {"capacity": store.capacity, "num_streams": store.num_streams,
            "frame_shape": list(store.frame.shape[1:]), "frame_dtype": str(store.frame.dtype),
            "stack": store.stack, "n_step": store.n_step, "prioritized": store.prioritized}


class ReplayFiles:
    """Saves `store` into `folder` (one save in flight at a time) and restores it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._thread: threading.Thread | None = None
        self.saved: np.ndarray | None = None   # records written per stream, as on disk
        self.last_error: str | None = None     # why the last save did not complete

    # -- saving ----------------------------------------------------------------------

    def save(self, store: FrameReplay, extra: dict | None = None) -> bool:
        """Start writing what `store` added since the last save, with `extra` (plain
        values the restore hands back); False, with `last_error`, when nothing started:
        the previous save is still being written, or the disk lacks room."""
        if self.busy():
            self.last_error = "replay not saved: the previous save is still being written"
            return False
        if self.saved is None:
            self.saved = self._on_disk(store)
        written = store.written.copy()
        begin = np.maximum(self.saved, written - store.per_stream)
        jobs = [(s, position, run) for s in range(store.num_streams)
                for position, run in store.runs(s, int(begin[s]), int(written[s]))]
        need = sum(run.stop - run.start for _, _, run in jobs) * _record_bytes(store)
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free
        if need > free:
            self.last_error = (f"replay not saved: {need / 2**30:.1f} GiB to write and "
                               f"{free / 2**30:.1f} GiB free in {str(self.folder)!r}")
            return False
        leaves = store.priorities() if store.prioritized else None
        state = {"layout": layout(store), "written": written.tolist(),
                 "max_priority": store.max_priority, "extra": extra or {}}
        self._thread = threading.Thread(target=self._write, daemon=True,
                                        args=(store, jobs, written, leaves, state))
        self._thread.start()
        return True

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _write(self, store: FrameReplay, jobs: list, written: np.ndarray,
               leaves: np.ndarray | None, state: dict) -> None:
        try:
            previous = self._state()
            if previous and previous["layout"] != state["layout"]:
                previous = None
            names = list(previous["segments"]) if previous else []
            oldest = np.maximum(written - store.per_stream, 0)
            if previous:
                oldest = np.maximum(oldest, previous["oldest"])
            for stream, begin, run in jobs:
                arrays = {name: getattr(store, name)[run] for name in _FIELDS}  # views
                if store.prioritized:
                    arrays["pending"] = store.pending[run]
                end = begin + run.stop - run.start
                names.append(f"segment-{stream}-{begin}-{end}.npz")
                _atomic(self.folder / names[-1], lambda f, a=arrays: np.savez(f, **a))
                # Records overwritten while this segment was written hold newer ones:
                # the restored window starts after them.
                overwritten = int(store.written[stream]) - store.per_stream
                if overwritten > begin:
                    oldest[stream] = max(oldest[stream], overwritten)
            state["oldest"] = oldest.tolist()
            if leaves is not None:
                _atomic(self.folder / "priorities.npy", lambda f: np.save(f, leaves))
            state["segments"] = _live(names, written, store.per_stream)
            _atomic(self.folder / "state.json",
                    lambda f: f.write(json.dumps(state).encode()))
            self._prune(state["segments"])
            self.saved, self.last_error = written, None
        except (OSError, UserError) as err:
            self.last_error = f"replay not saved: {err}"
            self.saved = np.zeros_like(written)   # the next save writes the whole window

    def _prune(self, keep: list[str]) -> None:
        for path in self.folder.glob("segment-*.npz"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def check(self, store: FrameReplay) -> None:
        """A UserError, before anything starts, when the folder holds a save that cannot
        be restored into `store`."""
        state = self._state()
        if state is not None and state["layout"] != layout(store):
            raise UserError(f"the replay saved in {str(self.folder)!r} has another layout "
                            f"({state['layout']}) than this run's ({layout(store)}); "
                            f"set run.checkpoint_replay=false or pick another run.name")

    def _on_disk(self, store: FrameReplay) -> np.ndarray:
        """Records per stream already in the folder for this layout (0 for a new one)."""
        state = self._state()
        if state is None or state["layout"] != layout(store):
            return np.zeros(store.num_streams, np.int64)
        return np.minimum(np.asarray(state["written"], np.int64), store.written)

    # -- restoring -------------------------------------------------------------------

    def restore(self, store: FrameReplay) -> dict | None:
        """Fill an empty `store` from the folder; returns the `extra` of that save, or
        None when the folder holds none. A save of another layout is a UserError."""
        state = self._state()
        if state is None:
            return None
        self.check(store)
        written = np.asarray(state["written"], np.int64)
        oldest = np.asarray(state["oldest"], np.int64)
        for name in state["segments"]:
            stream, begin, end = map(int, _SEGMENT.fullmatch(name).groups())
            live_begin = max(begin, int(oldest[stream]))
            end = min(end, int(written[stream]))
            if end <= live_begin:
                continue
            with np.load(self.folder / name) as arrays:
                for position, run in store.runs(stream, live_begin, end):
                    cut = slice(position - begin, position - begin + run.stop - run.start)
                    for field in _FIELDS:
                        getattr(store, field)[run] = arrays[field][cut]
                    if store.prioritized:
                        store.pending[run] = arrays["pending"][cut]
        leaves = self.folder / "priorities.npy"
        store.restore_written(written, oldest, state["max_priority"],
                              np.load(leaves) if store.prioritized and leaves.is_file()
                              else None)
        self.saved = written
        return state["extra"]

    def _state(self) -> dict | None:
        path = self.folder / "state.json"
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            state = {"unreadable": type(err).__name__}
        keys = ("layout", "written", "oldest", "segments", "max_priority", "extra")
        if not isinstance(state, dict) or not all(k in state for k in keys):
            raise UserError(f"the replay saved in {str(self.folder)!r} is unreadable or of "
                            f"an older kind; delete that folder to start it afresh")
        return state


def _live(names: list[str], written: np.ndarray, per_stream: int) -> list[str]:
    """Of segment files `names`, those holding some record of the live window."""
    def holds_live(name: str) -> bool:
        stream, _, end = map(int, _SEGMENT.fullmatch(name).groups())
        return end > written[stream] - per_stream
    return sorted({n for n in names if holds_live(n)},
                  key=lambda n: int(_SEGMENT.fullmatch(n).group(2)))


def _record_bytes(store: FrameReplay) -> int:
    return int(store.frame[0].nbytes + 4 + 4 + 4)  # frame, action and flags, reward, priority


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
