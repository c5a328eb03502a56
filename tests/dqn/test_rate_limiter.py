"""The replay-ratio limiter, step by step (samples_per_insert = 8, as 32 per 4 env steps)."""

from dqn.rate_limiter import RateLimiter


def test_nothing_is_sampled_before_min_inserts():
    lim = RateLimiter(8.0, min_inserts=100, error_buffer=64)
    lim.insert(99)
    assert not lim.can_sample(32)
    lim.insert(1)
    assert lim.can_sample(32)


def test_learner_may_run_ahead_by_the_error_buffer_only():
    lim = RateLimiter(8.0, min_inserts=100, error_buffer=64)
    lim.insert(100)
    lim.sample(32)
    lim.sample(32)                 # lead = -64: at the buffer's edge
    assert not lim.can_sample(32)  # a dead collector fleet stops the learner here
    lim.insert(4)                  # 4 inserts earn 32 samples
    assert lim.can_sample(32)


def test_collectors_may_run_ahead_by_the_error_buffer_only():
    lim = RateLimiter(8.0, min_inserts=100, error_buffer=64)
    assert lim.can_insert(100)     # filling up to min_inserts is never held back
    lim.insert(100)
    assert lim.can_insert(8)       # lead 64
    assert not lim.can_insert(9)   # lead 72 > 64
    lim.sample(32)
    assert lim.can_insert(12)


def test_disabled_limiter_only_keeps_min_inserts():
    lim = RateLimiter(8.0, min_inserts=10, error_buffer=0, enabled=False)
    assert not lim.can_sample(1)
    lim.insert(10_000)
    assert lim.can_insert(10**9) and lim.can_sample(10**6)
