"""The conditional preset's training update, bare, with the CPU's shifts and
index_select rows (now) against one advanced index for both (before), in one process:

    python docs/gan_step_bench.py [--updates 200] [section.key=value ...]
    python docs/gan_step_bench.py --against model.g_class_norm=false  # the preset without it
    python docs/gan_step_bench.py --weight-grad  # oneDNN's conv weight gradients (before)
                                                 # against matrix products (now)
    python docs/gan_step_bench.py --shift  # pad and a slice per image (before) against
                                           # the shift of learner/gan/augment.py (now)

Random frames and labels, the preset's networks and step (bfloat16 where the CPU has
it, channels-last, 2 threads). The updates alternate before / now, one each, so that a
noisy host (other tenants come and go within seconds) weighs on both alike; prints
the median time of an update of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager, nullcontext

import torch

import learner.gan.model
import learner.gan.augment
import learner.gan.conv
from learner.gan.model import Discriminator, GanParts, Generator, adam, train_step
from learner.gan.config import GanConfig
from dqn.precision import bfloat16_passes
from dqn.process import torch_process
from dqn.schema import load_config


@contextmanager
def translated_by(crops):
    """The translation's crops by `crops(padded, dy, dx, h, w)` from the zero-padded
    batch (B, H, W, C), as `_indexed` takes them, instead of the CPU's shift."""
    shift = learner.gan.augment._Shift

    class Padded:
        @staticmethod
        def apply(x: torch.Tensor, dy: list[int], dx: list[int]) -> torch.Tensor:
            sy, sx = (max(abs(o) for o in offsets) for offsets in (dy, dx))
            rows, cols = (torch.tensor(o).view(-1, 1, 1) for o in (dy, dx))
            return learner.gan.augment.from_padded(x, rows + sy, cols + sx, sy, sx, crops)
    learner.gan.augment._Shift = Padded
    try:
        yield
    finally:
        learner.gan.augment._Shift = shift


def sliced(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int
           ) -> torch.Tensor:
    """A slice per image, stacked: the CPU's crops until 2026-12-06 (twelfth session)."""
    return torch.stack([img[y:y + h, c:c + w] for img, y, c in zip(
        padded.unbind(0), dy.view(-1).tolist(), dx.view(-1).tolist())])


@contextmanager
def indexed_as_before():
    """Both picks by one advanced index, as until 2026-12-05 (seventh session)."""
    per_label = learner.gan.model.per_label
    learner.gan.model.per_label = lambda rows, labels: (rows[labels] if labels is not None
                                              and len(rows) > 1 else rows[:1])
    try:
        with translated_by(learner.gan.augment._indexed):
            yield
    finally:
        learner.gan.model.per_label = per_label


def sliced_as_before():
    return translated_by(sliced)


@contextmanager
def onednn_weight_grad():
    """Every convolution on oneDNN, forward and backward, as until 2026-12-06 (eleventh
    session)."""
    learner.gan.conv.ENABLED = False
    try:
        yield
    finally:
        learner.gan.conv.ENABLED = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200, help="pairs of updates")
    parser.add_argument("--against", nargs="+", metavar="KEY=VALUE", help="compare the "
                        "preset with these overrides ('now') against it without them "
                        "('before'), both indexing the current way")
    parser.add_argument("--weight-grad", action="store_true", help="before: oneDNN's "
                        "weight gradients for every convolution (learner/gan/conv.py)")
    parser.add_argument("--shift", action="store_true", help="before: the translation "
                        "from the zero-padded batch, a slice per image (learner/gan/augment.py)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch_process(2)
    cfg = load_config("conditional", args.overrides, GanConfig)
    size, classes = cfg.data.image_size, len(cfg.data.games)
    real = (torch.rand(cfg.train.batch_size, 3, size, size) * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, classes, (cfg.train.batch_size,))
    bf16 = bfloat16_passes(cfg.train.precision, torch.device("cpu"),
                           ("conv2d", "conv_transpose2d", "linear"), avx512_bf16=True)
    old = _updater(cfg, real, labels, bf16)
    new = (_updater(load_config("conditional", [*args.overrides, *args.against], GanConfig),
                    real, labels, bf16) if args.against else old)
    as_before = (nullcontext if args.against else
                 onednn_weight_grad if args.weight_grad else
                 sliced_as_before if args.shift else indexed_as_before)

    for _ in range(5):  # warm-up: oneDNN picks its kernels
        old(), new()
    before, now = [], []
    for i in range(args.updates):
        with as_before():
            before.append(old())
        now.append(new())
        if (i + 1) % 50 == 0:
            print(f"{i + 1} pairs: median ms an update, before {_ms(before)}, now {_ms(now)}",
                  flush=True)
    print(f"median: before {_ms(before)} ms, now {_ms(now)} ms an update "
          f"({'bfloat16' if bf16 else 'float32'}); now / before "
          f"{statistics.median(now) / statistics.median(before):.3f}")


def _updater(cfg: GanConfig, real: torch.Tensor, labels: torch.Tensor, bf16: bool):
    """A function that runs one training update of `cfg`'s networks, returning seconds."""
    m, t = cfg.model, cfg.train
    torch.manual_seed(0)
    g = Generator(m, cfg.data.image_size, len(cfg.data.games))
    d = Discriminator(m, cfg.data.image_size, len(cfg.data.games))
    g, d = (n.to(memory_format=torch.channels_last) for n in (g, d))
    parts = GanParts(g, d, adam(g, t.lr_g, t.beta1), adam(d, t.lr_d, t.beta1))

    def update() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            train_step(parts, real, labels, m.latent_size, t.g_loss, t.augment, 0.0,
                       m.latent_codes, t.code_weight, m.pack, mode_seeking=t.mode_seeking)
        return time.perf_counter() - start
    return update


def _ms(times: list[float]) -> str:
    return f"{1000 * statistics.median(times):.1f}"


if __name__ == "__main__":
    main()
