"""The continuous cache of the language models (learner/lm/cache.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from learner.lm.model import CharLM, bits_per_char, evaluate, sample
from learner.lm.corpus import Streams
from learner.lm.cache import ContinuousCache
from learner.lm.config import CacheConfig, ModelConfig


def direct(hidden, logits, nexts, size, theta, weight):
    """The cache's formula position by position: p_cache(w) ∝ Σ exp(θ h_t·h_i) over the
    `size` positions i before t whose next byte is w; p = (1-λ) p_model + λ p_cache."""
    batch, steps, _ = hidden.shape
    out = torch.empty_like(logits)
    for b in range(batch):
        for t in range(steps):
            p = F.softmax(logits[b, t], -1)
            earlier = list(range(max(0, t - size), t))
            if earlier:
                w = torch.softmax(torch.stack([theta * hidden[b, t] @ hidden[b, i]
                                               for i in earlier]), 0)
                copy = torch.zeros_like(p)
                for wi, i in zip(w, earlier):
                    copy[nexts[b, i]] += wi
                p = (1 - weight) * p + weight * copy
            out[b, t] = p.log()
    return out


@pytest.mark.parametrize("chunks", [(4, 4, 3), (1,) * 11])
def test_cache_equals_the_formula_over_a_sliding_window(chunks):
    torch.manual_seed(0)
    steps = sum(chunks)
    hidden = torch.randn(2, steps, 6)
    logits = torch.randn(2, steps, 256)
    nexts = torch.randint(0, 5, (2, steps))  # few distinct bytes: copies collide
    expected = direct(hidden, logits, nexts, size=5, theta=0.7, weight=0.4)
    cache = ContinuousCache(5, 0.7, 0.4)
    got, start = [], 0
    for k in chunks:
        part = slice(start, start + k)
        if k > 1:  # evaluation: the chunk's own bytes, then it joins the memory
            got.append(cache.log_probs(hidden[:, part], logits[:, part], nexts[:, part]))
        else:  # sampling: the memory only, then the drawn byte is pushed
            got.append(cache.log_probs(hidden[:, part], logits[:, part]))
            cache.push(hidden[:, part], nexts[:, part])
        start += k
    torch.testing.assert_close(torch.cat(got, 1), expected, atol=1e-5, rtol=1e-5)
    assert torch.cat(got, 1).exp().sum(-1).sub(1).abs().max() < 1e-5  # a distribution


def test_cache_copies_text_the_network_cannot_know():
    torch.manual_seed(1)
    model = CharLM(ModelConfig(cell="lstm", embed_dim=16, hidden_size=64, num_layers=1))
    rng = np.random.default_rng(0)
    phrase = rng.integers(0, 256, 200, dtype=np.uint8)
    streams = Streams(np.tile(phrase, 4), n=1, k=50)  # read 4 times: 3 can be copied
    nats, plain, count = evaluate(model, streams, CacheConfig(size=1000, theta=50.0,
                                                              weight=0.5))
    assert bits_per_char(plain, count) > 7.5  # untrained: about a uniform guess
    assert bits_per_char(nats, count) < 0.55 * bits_per_char(plain, count)  # 3.7 against 8.0
    off, plain_again, _ = evaluate(model, streams, CacheConfig(size=0))
    assert off == plain_again == pytest.approx(plain)


def test_sampling_with_the_cache_is_reproducible_and_differs_from_without():
    torch.manual_seed(4)
    model = CharLM(ModelConfig(cell="lstm", embed_dim=8, hidden_size=16, num_layers=1))
    cache = CacheConfig(size=64, theta=30.0, weight=0.9)
    first = sample(model, b"#define A 1\n#define", 80, temperature=1.0, seed=7, cache=cache)
    assert sample(model, b"#define A 1\n#define", 80, temperature=1.0, seed=7,
                  cache=cache) == first
    assert sample(model, b"#define A 1\n#define", 80, temperature=1.0, seed=7) != first
    # the first byte drawn: λ = 0.9 of its distribution copies bytes of the prime
    prime = b"#define A 1\n#define"
    firsts = [sample(model, prime, 1, temperature=1.0, seed=s, cache=cache)[0] for s in range(60)]
    plain = [sample(model, prime, 1, temperature=1.0, seed=s)[0] for s in range(60)]
    assert sum(b in prime for b in firsts) > 0.75 * 60
    assert sum(b in prime for b in plain) < 0.25 * 60  # an untrained net: near uniform
