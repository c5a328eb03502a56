"""How the GAN job trains: its training passes in bfloat16 and channels-last memory, the
step sizes' linear decay, the colour augmentation, the clock budget and mode seeking
(the networks and the job itself: test_model.py)."""

import dataclasses

import pytest
import torch

from dqn import precision
from learner.gan.model import (Discriminator, GanParts, Generator, StepSettings, adam,
                               train_step)
from learner.gan.config import GanConfig, GanModelConfig, GanTrainConfig
from dqn.precision import bfloat16_passes
from learner.gan.job import learning_rate_scale, set_step_sizes


def _parts(seed: int, channels_last: bool) -> GanParts:
    torch.manual_seed(seed)
    cfg = GanModelConfig(latent_size=8, g_width=8, d_width=8, latent_codes=2)
    g, d = Generator(cfg, 16, 2), Discriminator(cfg, 16, 2)
    if channels_last:
        g, d = (m.to(memory_format=torch.channels_last) for m in (g, d))
    return GanParts(g, d, adam(g, 1e-3, 0.5), adam(d, 1e-3, 0.5))


def _step(parts: GanParts, bf16: bool, channels_last: bool):
    torch.manual_seed(1)
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    if channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return train_step(parts, real, torch.randint(2, (8,)),
                          StepSettings(8, "translation", codes=2, code_weight=1.0))


def test_a_bfloat16_channels_last_step_tracks_the_float32_one_and_keeps_float32_weights():
    plain, fast = _parts(0, False), _parts(0, True)
    start = {net: [p.detach().clone() for p in getattr(plain, net).parameters()]
             for net in ("generator", "discriminator")}
    ref, got = _step(plain, False, False), _step(fast, True, True)
    # D's losses and outputs come before any update: bfloat16's 3 digits. The G step
    # follows D's first Adam step (+-lr on every weight, whatever the gradient's size),
    # so there the two runs may differ more: the code loss most, read by the new head.
    for a, b, rel in zip(ref, got, (0.01, 0.05, 0.01, 0.01, 0.15)):
        assert b == pytest.approx(a, rel=rel)
    for net, before in start.items():
        agree = total = 0
        for p, q, b in zip(getattr(plain, net).parameters(), getattr(fast, net).parameters(),
                           before):
            assert q.dtype == torch.float32 and q.grad.dtype == torch.float32
            agree += int(((p.detach() - b).sign() == (q.detach() - b).sign()).sum())
            total += b.numel()
        # both steps went the same way (a random direction would agree half the time)
        assert agree / total > 0.75, (net, agree / total)
    conv = fast.generator.net[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_the_gan_takes_bfloat16_on_avx512_bf16_where_the_lm_does_not(monkeypatch):
    cpu, layers = torch.device("cpu"), ("conv2d", "conv_transpose2d", "linear")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(precision, "bfloat16_error", lambda layer, device_type: None)
    for avx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx)
        assert bfloat16_passes("auto", cpu, layers, avx512_bf16=True) is avx
        assert bfloat16_passes("auto", cpu, layers) is False
        assert bfloat16_passes("float32", cpu, layers, avx512_bf16=True) is False
    assert bfloat16_passes("auto", torch.device("cuda"), layers, avx512_bf16=True) is False
    assert GanTrainConfig().precision == "auto"


def test_step_sizes_hold_then_fall_linearly_to_zero():
    t = dataclasses.replace(GanTrainConfig(), lr_decay_start=0.5, lr_g=2e-4, lr_d=4e-4)
    scales = [learning_rate_scale(t, u, 100) for u in (0, 49, 50, 75, 99, 100)]
    assert scales == pytest.approx([1, 1, 1, 0.5, 0.02, 0])
    assert learning_rate_scale(GanTrainConfig(), 99, 100) == 1.0  # default: constant
    parts = _parts(0, False)
    set_step_sizes(parts, t, 0.5)
    assert parts.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert parts.opt_d.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_the_decay_start_is_checked():
    from dqn.errors import UserError
    from dqn.schema import load_config

    with pytest.raises(UserError, match="lr_decay_start"):
        load_config("conditional", ("train.lr_decay_start=1.5",), GanConfig)


def test_colour_augmentation_moves_brightness_saturation_and_contrast_per_image():
    from learner.gan.augment import _color, augment_images

    torch.manual_seed(0)
    flat = torch.full((64, 3, 8, 8), 0.25)
    out = _color(flat)  # a grey, uniform image keeps its saturation and contrast
    shift = out[:, 0, 0, 0] - 0.25
    assert torch.allclose(out, (0.25 + shift).view(-1, 1, 1, 1).expand_as(out), atol=1e-6)
    assert shift.abs().max() <= 0.5 and shift.std() > 0.2  # U(-0.5, 0.5), per image
    red = torch.zeros(64, 3, 8, 8)
    red[:, 0] = 1.0
    spread = _color(red).std(dim=(1, 2, 3))  # saturation and contrast scale colour apart
    assert spread.min() < 0.5 * red[0].std() < spread.max()
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    moved = augment_images(x, "color,translation")
    assert moved.shape == x.shape
    moved.sum().backward()
    assert x.grad.abs().sum() > 0


def test_a_budget_stops_before_the_epoch_that_would_not_fit():
    from learner.gan.config import CLOSING
    from learner.gan.job import planned_epochs

    assert CLOSING == 10.0
    t = GanTrainConfig(epochs=24, budget_minutes=10)
    assert planned_epochs(t, 0, 0.0) == 24        # no pace yet
    assert planned_epochs(t, 5, 0.0) == 24        # nor from a checkpoint without a clock
    assert planned_epochs(t, 1, 29.5) == 20       # 20 x 29.5 s + 10 s of closing: 600 s
    assert planned_epochs(t, 1, 30.0) == 19       # a 20th would close 10 s past the budget
    assert planned_epochs(t, 1, 20.0) == 24       # a fast host: the epochs bind first
    assert planned_epochs(t, 18, 531.0) == 20     # an epoch late in a run is judged alike
    assert planned_epochs(t, 19, 590.0) == 19     # a 20th would end past the budget
    # 120 s of frames, judge and Ray's start before the first update count too
    assert planned_epochs(t, 1, 30.0, before=120.0) == 15    # 120 + 15 x 30 + 10 = 580
    assert planned_epochs(t, 1, 30.0, before=700.0) == 1     # nothing more fits
    # the longest evaluation so far is kept back once, for the last epoch's
    assert planned_epochs(t, 1, 29.0, longest=10.0) == 20    # 20 x 29 + 10 + 10 = 600
    assert planned_epochs(t, 1, 29.0, longest=10.5) == 19
    assert planned_epochs(dataclasses.replace(t, budget_minutes=None), 5, 1e6) == 24


def test_with_report_draws_only_at_the_end_the_last_evaluation_is_planned_for_them():
    from learner.gan.config import last_evaluation_scale
    from dqn.schema import load_config

    q = load_config("conditional", (), GanConfig).quality
    assert q.report_every_epochs == 0 and q.keep_live and q.keep_best
    # 2 candidates x 4 selection draws every evaluation; the last adds 8 report draws for
    # its own generator and 8 for one kept earlier
    assert last_evaluation_scale(q) == (2 * 4 + 2 * 8) / (2 * 4)
    assert last_evaluation_scale(dataclasses.replace(q, keep_live=False)) == (4 + 16) / 4
    # report draws during the run: the longest evaluation already held them
    assert last_evaluation_scale(dataclasses.replace(q, report_every_epochs=3)) == 1.0
    assert last_evaluation_scale(dataclasses.replace(q, report_every_epochs=None)) == 1.0
    # nothing drawn before the end: the report draws against no selection draws
    assert last_evaluation_scale(dataclasses.replace(q, keep_best=False)) == 8.0


def test_mode_seeking_pairs_fakes_by_label_and_punishes_alike_pairs():
    from learner.gan.model import mode_seeking_loss

    z = torch.randn(8, 4)
    same = torch.zeros(8, 3, 4, 4)
    apart = torch.cat([torch.zeros(4, 3, 4, 4), torch.ones(4, 3, 4, 4)])
    assert mode_seeking_loss(same, z, 4) > 1e3 * mode_seeking_loss(apart, z, 4)
    torch.manual_seed(0)
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4)
    g, d = Generator(cfg, 16, 3), Discriminator(cfg, 16, 3)
    seen = []
    g.register_forward_hook(lambda m, args, out: seen.append(args[1].clone()))
    before = g.net[0].weight.detach().clone()
    parts = GanParts(g, d, adam(g, 1e-3, 0.5), adam(d, 1e-3, 0.5))
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    stats = train_step(parts, torch.rand(7, 3, 16, 16) * 2 - 1, labels,
                       StepSettings(8, mode_seeking=1.0))
    assert seen[0].tolist() == [0, 1, 2, 0, 1, 2, 1]   # 3 pairs of one label, and one
    assert not torch.equal(g.net[0].weight, before) and stats.loss_g > 0
