"""FrameReplay: hand-computed cases, then random streams checked against a slow reference."""

import numpy as np
import pytest

from dqn.recorder import Records
from dqn.replay import FrameReplay
from tests.dqn.replay_reference import reference_stack, reference_valid, reference_window

FIELDS = ("frame_id", "action", "reward", "terminated", "first", "last")


def records(rows: list[tuple]) -> Records:
    """One stream's records from rows (frame_id, action, reward, terminated, first, last)."""
    cols = list(zip(*rows))
    return Records(frame=np.array(cols[0], np.int32)[:, None, None],
                   action=np.array(cols[1])[:, None], reward=np.array(cols[2], np.float32)[:, None],
                   terminated=np.array(cols[3], bool)[:, None],
                   first=np.array(cols[4], bool)[:, None], last=np.array(cols[5], bool)[:, None])


def store(capacity=64, streams=1, stack=2, n=2, gamma=0.5, prioritized=False, seed=0):
    return FrameReplay(capacity, streams, (1,), np.int32, stack=stack, n_step=n, gamma=gamma,
                       prioritized=prioritized, seed=seed)


def live_positions(replay: FrameReplay, stream: int = 0) -> list[int]:
    written = replay.written[stream]
    return [g for g in range(max(0, written - replay.per_stream), written)
            if replay.live[stream * replay.per_stream + g % replay.per_stream]]


# An episode of two transitions ending in a terminal, then a new episode begun.
#  pos frame action reward term  first  last
EPISODE = [
    (1, 0, 1.0, False, True, False),   # 0: first frame
    (2, 1, 1.0, True, False, False),   # 1: game over after this action
    (3, 0, 0.0, False, False, True),   # 2: final frame (reset step: not a transition)
    (4, 1, 2.0, False, True, False),   # 3: next episode
    (5, 0, 3.0, False, False, False),  # 4
]


def test_terminal_episode_boundary_by_hand():
    replay = store()
    replay.add(records(EPISODE))
    # 0 and 1 are complete; 2 is a `last` frame; 3 and 4 wait for later records.
    assert live_positions(replay) == [0, 1]
    batch = replay.sample(64)
    by_pos = {int(i): k for k, i in enumerate(batch.index)}
    k0, k1 = by_pos[0], by_pos[1]
    assert batch.obs[k0, :, 0].tolist() == [0, 1]          # padded before the first frame
    assert batch.reward[k0] == pytest.approx(1.0 + 0.5 * 1.0)  # two steps, then terminal
    assert batch.discount[k0] == 0.0
    assert batch.next_obs[k0, :, 0].tolist() == [2, 3]
    assert batch.obs[k1, :, 0].tolist() == [1, 2]
    assert (batch.reward[k1], batch.discount[k1]) == (1.0, 0.0)


def test_new_episode_stack_never_reaches_into_the_previous_one():
    replay = store()
    replay.add(records(EPISODE + [(6, 1, 0.0, False, False, False),
                                  (7, 0, 0.0, False, False, False)]))
    assert live_positions(replay) == [0, 1, 3, 4]
    batch = replay.sample(256)
    k3 = list(batch.index).index(3)
    assert batch.obs[k3, :, 0].tolist() == [0, 4]
    assert batch.next_obs[k3, :, 0].tolist() == [5, 6]
    assert batch.reward[k3] == pytest.approx(2.0 + 0.5 * 3.0)
    assert batch.discount[k3] == pytest.approx(0.25)


def test_truncated_episode_bootstraps_from_its_final_frame():
    replay = store()
    replay.add(records([(1, 0, 1.0, False, True, False),
                        (2, 0, 1.0, False, False, False),   # the frame cap ends it here:
                        (3, 0, 0.0, False, False, True),    # final frame, not terminal
                        (4, 0, 0.0, False, True, False)]))
    batch = replay.sample(64)
    k1 = list(batch.index).index(1)
    assert batch.discount[k1] == pytest.approx(0.5)
    assert batch.next_obs[k1, :, 0].tolist() == [2, 3]


def test_stream_cut_by_a_restarted_writer_is_not_bridged():
    replay = store()
    replay.add(records([(1, 0, 1.0, False, True, False), (2, 0, 1.0, False, False, False),
                        # the writer died here; its replacement starts a new episode
                        (3, 0, 1.0, False, True, False), (4, 0, 1.0, False, False, False),
                        (5, 0, 1.0, False, False, False)]))
    assert live_positions(replay) == [2]   # 0 and 1 would bootstrap across the cut


def test_chunks_complete_earlier_windows():
    replay = store()
    replay.add(records(EPISODE[:4]))
    assert live_positions(replay) == [0, 1]
    replay.add(records([(5, 0, 3.0, False, False, False), (6, 0, 0.0, False, False, False)]))
    assert live_positions(replay) == [0, 1, 3]


def test_uniform_sampling_of_an_empty_store_is_an_error():
    with pytest.raises(ValueError):
        store().sample(4)


def random_stream(rng: np.random.Generator, length: int, next_id: int) -> list[tuple]:
    rows: list[tuple] = []
    while len(rows) < length:
        steps = int(rng.integers(1, 12))
        game_over, cut = rng.random() < 0.6, rng.random() < 0.1
        for t in range(steps):
            life_lost = rng.random() < 0.1
            term = (game_over and t == steps - 1) or life_lost
            rows.append((next_id, int(rng.integers(4)), float(rng.integers(-1, 2)), term,
                         t == 0, False))
            next_id += 1
        if not cut:
            rows.append((next_id, 0, 0.0, False, False, True))
            next_id += 1
    return rows[:length]


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_streams_match_the_reference(prioritized, seed):
    """Many episodes through 3 small streams: wrap-around many times, chunks of any size."""
    rng = np.random.default_rng(seed)
    stack, n, streams, capacity = 4, 3, 3, 3 * 40
    replay = FrameReplay(capacity, streams, (1,), np.int32, stack=stack, n_step=n, gamma=0.9,
                         prioritized=prioritized, seed=seed)
    rows = [random_stream(rng, 400, 1 + 10_000 * s) for s in range(streams)]
    hist = [{f: [r[i] for r in stream_rows] for i, f in enumerate(FIELDS)}
            for stream_rows in rows]
    cursor = [0] * streams
    while min(cursor) < 400:
        chunk = int(rng.integers(1, 20))
        chosen = [s for s in range(streams) if cursor[s] < 400 and rng.random() < 0.7]
        if not chosen:
            continue
        chunk = min(chunk, *(400 - cursor[s] for s in chosen))
        parts = [records(rows[s][cursor[s]:cursor[s] + chunk]) for s in chosen]
        replay.add(Records(*(np.concatenate(a, axis=1) for a in zip(*parts))), np.array(chosen))
        for s in chosen:
            cursor[s] += chunk
        for s in range(streams):
            expected = [g for g in range(cursor[s]) if
                        reference_valid(hist[s], g, cursor[s], replay.per_stream, stack, n)]
            assert live_positions(replay, s) == expected
        if len(replay) == 0:
            continue
        batch = replay.sample(32, beta=0.5)
        for k, ident in enumerate(batch.index):
            s, g = int(ident % streams), int(ident // streams)
            ret, discount, m = reference_window(hist[s], g, n, cursor[s])
            assert batch.obs[k, :, 0].tolist() == reference_stack(hist[s], g, stack)
            assert batch.next_obs[k, :, 0].tolist() == reference_stack(hist[s], g + m, stack)
            assert batch.reward[k] == pytest.approx(ret, abs=1e-5)
            assert batch.discount[k] == pytest.approx(discount, abs=1e-6)
            assert batch.action[k] == hist[s]["action"][g]


def test_priorities_are_proportional():
    """Sampling frequency follows p^alpha within 5 standard errors (200K draws)."""
    replay = store(capacity=400, streams=2, prioritized=True)
    replay.alpha = 0.5
    part = records([(i + 1, 0, 0.0, False, i == 0, False) for i in range(150)])
    replay.add(Records(*(np.concatenate([a, a], axis=1) for a in part)))
    live = len(replay)
    batch = replay.sample(live)
    td = np.linspace(0.0, 4.0, live) ** 2
    replay.update_priorities(batch.index, td)
    prob = (td + replay.priority_eps) ** 0.5
    prob /= prob.sum()
    draws = 200_000
    counts = np.zeros(live)
    lookup = {int(i): k for k, i in enumerate(batch.index)}
    for _ in range(draws // 1000):
        for ident in replay.sample(1000).index:
            counts[lookup[int(ident)]] += 1
    freq = counts / draws
    stderr = np.sqrt(prob * (1 - prob) / draws)
    assert np.all(np.abs(freq - prob) <= 5 * stderr + 1e-4)
    # importance weights: (N P(i))^-beta normalized by the batch maximum
    sample = replay.sample(64, beta=0.6)
    p = prob[[lookup[int(i)] for i in sample.index]]
    expected = (live * p) ** -0.6
    np.testing.assert_allclose(sample.weight, expected / expected.max(), rtol=1e-4)


def test_new_records_get_the_max_priority_and_given_priorities_are_kept():
    replay = store(capacity=100, prioritized=True)
    replay.alpha = 1.0
    replay.add(records(EPISODE[:3]))
    replay.update_priorities(np.array([0]), np.array([9.0]))
    given = np.array([[2.0], [0.0], [0.0], [0.0]])
    replay.add(records([(4, 1, 2.0, False, True, False), (5, 0, 3.0, False, False, False),
                        (6, 0, 0.0, False, False, False), (7, 0, 0.0, False, False, False)]),
               priorities=given)
    leaf = replay.tree.get(np.arange(6))
    assert leaf[0] == pytest.approx(9.0 + 1e-6)   # updated
    assert leaf[1] == pytest.approx(1.0)          # got the max at the time (1.0)
    assert leaf[3] == pytest.approx(2.0 + 1e-6)   # priority given at add
    assert leaf[2] == 0.0                         # a `last` frame is never sampled


def test_priority_updates_for_overwritten_records_are_dropped():
    replay = store(capacity=32, prioritized=True)
    rows = [(i + 1, 0, 0.0, False, i == 0, False) for i in range(20)]
    replay.add(records(rows))
    old = replay.sample(8).index
    for start in (100, 200):
        replay.add(records([(start + i, 0, 0.0, False, False, False) for i in range(15)]))
    assert replay.written[0] - replay.per_stream > old.max()   # all of them overwritten
    total = replay.tree.total
    replay.update_priorities(old, np.full(len(old), 1e6))
    assert replay.tree.total == pytest.approx(total)


def test_memory_per_atari_transition_at_1m():
    replay = FrameReplay(1_000_000, 64, (84, 84), np.uint8, stack=4, n_step=3, gamma=0.99,
                         prioritized=True)
    assert replay.nbytes() / replay.capacity <= 7_300
