"""A FrameReplay saved incrementally and restored: the restored store is the saved one,
record for record and priority for priority; only new records are written again."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from dqn.errors import UserError
from dqn.recorder import Records
from dqn.replay import FrameReplay
from dqn.replay_files import ReplayFiles
from tests.dqn.test_replay import random_stream, records

STREAMS, CAPACITY = 3, 3 * 40


def _store(prioritized: bool, seed: int = 0) -> FrameReplay:
    return FrameReplay(CAPACITY, STREAMS, (1,), np.int32, stack=4, n_step=3, gamma=0.9,
                       prioritized=prioritized, seed=seed)


class Writer:
    """Random episodes into the store's streams, a random chunk at a time."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.rows = [random_stream(self.rng, 2000, 1 + 10_000 * s) for s in range(STREAMS)]
        self.cursor = [0] * STREAMS

    def add(self, store: FrameReplay, steps: int) -> None:
        for _ in range(steps):
            chosen = [s for s in range(STREAMS) if self.rng.random() < 0.7] or [0]
            chunk = int(self.rng.integers(1, 12))
            parts = [records(self.rows[s][self.cursor[s]:self.cursor[s] + chunk])
                     for s in chosen]
            store.add(Records(*(np.concatenate(a, axis=1) for a in zip(*parts))),
                      np.array(chosen), self.rng.random((chunk, len(chosen))))
            for s in chosen:
                self.cursor[s] += chunk


def _same(a: FrameReplay, b: FrameReplay) -> None:
    assert a.written.tolist() == b.written.tolist() and len(a) == len(b) > 0
    live = a.live
    assert np.array_equal(live, b.live)
    for field in ("frame", "action", "reward", "terminated", "first", "last"):
        assert np.array_equal(getattr(a, field)[live], getattr(b, field)[live]), field
    if a.prioritized:
        assert np.allclose(a.priorities(), b.priorities()) and a.max_priority == b.max_priority
    b.rng.bit_generator.state = a.rng.bit_generator.state   # the same draws, then
    sample_a, sample_b = a.sample(16, beta=0.5), b.sample(16, beta=0.5)
    for x, y in zip(sample_a, sample_b):
        assert np.array_equal(x, y)


def _save(files: ReplayFiles, store: FrameReplay) -> None:
    assert files.save(store)
    files.wait()
    assert files.last_error is None


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_restored_store_is_the_saved_one_after_saves_wraps_and_priority_updates(
        tmp_path, prioritized):
    store, writer, files = _store(prioritized, seed=1), Writer(0), ReplayFiles(tmp_path)
    for rounds in (5, 30, 2, 60):               # the later rounds wrap the streams around
        writer.add(store, rounds)
        if prioritized:
            batch = store.sample(8)
            store.update_priorities(batch.index, np.arange(8.0) + 5)
        _save(files, store)
        restored = _store(prioritized, seed=1)
        assert ReplayFiles(tmp_path).restore(restored) == {}
        _same(store, restored)


def test_a_save_writes_only_what_was_added_and_drops_what_was_overwritten(tmp_path):
    store, writer, files = _store(False), Writer(1), ReplayFiles(tmp_path)
    writer.add(store, 4)
    assert files.save(store, {"inserted": 7})
    files.wait()
    assert ReplayFiles(tmp_path).restore(_store(False)) == {"inserted": 7}
    first = {p.name for p in tmp_path.glob("segment-*.npz")}
    before = store.written.copy()
    writer.add(store, 2)
    _save(files, store)
    new = {p.name for p in tmp_path.glob("segment-*.npz")} - first
    for name in new:                            # each new segment starts where the last ended
        stream, begin, _ = map(int, name[len("segment-"):-len(".npz")].split("-"))
        assert begin == before[stream]
    writer.add(store, 80)                       # every stream wraps: the first segments go
    _save(files, store)
    left = {p.name for p in tmp_path.glob("segment-*.npz")}
    assert not first & left
    kept = json.loads((tmp_path / "state.json").read_text())["segments"]
    assert sorted(kept) == sorted(left)


def test_a_save_cut_short_leaves_the_last_one_readable(tmp_path):
    store, writer, files = _store(True), Writer(2), ReplayFiles(tmp_path)
    writer.add(store, 10)
    _save(files, store)
    saved = _store(True)
    ReplayFiles(tmp_path).restore(saved)
    (tmp_path / "segment-0-999-1000.npz").write_bytes(b"half a file")  # no state names it
    writer.add(store, 3)
    restored = _store(True)
    ReplayFiles(tmp_path).restore(restored)
    _same(saved, restored)
    _save(files, store)                          # the next save clears it away
    assert not (tmp_path / "segment-0-999-1000.npz").exists()


def test_a_save_without_room_on_the_disk_is_one_line_and_nothing_is_written(
        tmp_path, monkeypatch):
    import shutil

    store, files = _store(False), ReplayFiles(tmp_path)
    Writer(3).add(store, 5)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=1, used=1, free=10))
    assert not files.save(store)
    assert "GiB to write" in files.last_error and "GiB free" in files.last_error
    assert not list(tmp_path.glob("*"))


def test_a_replay_of_another_layout_is_one_line(tmp_path):
    store, files = _store(False), ReplayFiles(tmp_path)
    Writer(4).add(store, 5)
    _save(files, store)
    with pytest.raises(UserError, match="has another layout"):
        ReplayFiles(tmp_path).restore(_store(True))
    assert ReplayFiles(tmp_path / "nothing").restore(_store(False)) is None


def test_records_overwritten_while_they_are_written_are_left_out(tmp_path, monkeypatch):
    import copy

    from dqn import replay_files

    store, writer = _store(False), Writer(5)
    writer.add(store, 80)                         # full: every add overwrites the oldest
    before = copy.deepcopy(store)
    real, added = replay_files._atomic, []

    def insert_meanwhile(path, write):            # collectors go on during the write
        if path.name.startswith("segment-") and not added:
            writer.add(store, 3)
            added.append(True)
        real(path, write)

    monkeypatch.setattr(replay_files, "_atomic", insert_meanwhile)
    _save(ReplayFiles(tmp_path), store)
    restored = _store(False)
    ReplayFiles(tmp_path).restore(restored)
    oldest = json.loads((tmp_path / "state.json").read_text())["oldest"]
    assert any(o > w - before.per_stream for o, w in zip(oldest, before.written))
    assert restored.written.tolist() == before.written.tolist()
    live = restored.live
    assert 0 < live.sum() < before.live.sum()      # fewer records, and only good ones
    assert not (live & ~before.live).any()
    for field in ("frame", "action", "reward", "terminated", "last"):
        assert np.array_equal(getattr(restored, field)[live], getattr(before, field)[live])
    batch = restored.sample(64)
    for k, ident in enumerate(batch.index):        # no stack reaches past the restored window
        stream, position = int(ident % STREAMS), int(ident // STREAMS)
        assert position - 3 >= oldest[stream] or batch.obs[k, 0, 0] == 0
