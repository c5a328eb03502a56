"""What a language-model checkpoint holds: enough to resume training and to sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dqn.checkpoint import Record


@dataclass
class LMState(Record):
    kind: ClassVar[str] = "lm"
    writer: ClassVar[str] = "the language-model job (raydqn lm train)"
    model_config: dict        # ModelConfig as a dict: what builds the network
    cache_config: dict        # CacheConfig as a dict: the cache it was validated with
    model: dict               # CharLM.state_dict()
    optimizer: dict
    counters: dict            # Counters as a dict
    corpus: list              # corpus.paths it was trained on
