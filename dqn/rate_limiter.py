"""Hold the replay ratio: sampled transitions per inserted transition (Reverb's idea).

With `samples_per_insert` = batch_size / update_every_env_steps (8 at the Nature cadence
of one batch of 32 per 4 env steps), the limiter tracks

    lead = (inserted - min_inserts) * samples_per_insert - sampled

Sampling needs `inserted >= min_inserts` and may not push `lead` below -error_buffer: a
dead collector fleet therefore stops the learner instead of letting it overfit stale
data. Inserting may not push `lead` above +error_buffer: collectors that outrun the
learner wait for it. The error buffer absorbs the granularity of chunks and batches.
"""

from __future__ import annotations


class RateLimiter:
    def __init__(self, samples_per_insert: float, min_inserts: int, error_buffer: float,
                 enabled: bool = True):
        self.samples_per_insert = samples_per_insert
        self.min_inserts = min_inserts
        self.error_buffer = error_buffer
        self.enabled = enabled
        self.inserted = 0
        self.sampled = 0

    @property
    def lead(self) -> float:
        return (self.inserted - self.min_inserts) * self.samples_per_insert - self.sampled

    @property
    def ready(self) -> bool:
        """Past the minimum fill: sampling may start."""
        return self.inserted >= self.min_inserts

    def can_sample(self, n: int) -> bool:
        if not self.ready:
            return False
        return not self.enabled or self.lead - n >= -self.error_buffer

    def can_insert(self, n: int) -> bool:
        if not self.enabled or self.inserted + n <= self.min_inserts:
            return True
        lead_after = (self.inserted + n - self.min_inserts) * self.samples_per_insert - self.sampled
        return lead_after <= self.error_buffer

    def insert(self, n: int) -> None:
        self.inserted += n

    def sample(self, n: int) -> None:
        self.sampled += n
