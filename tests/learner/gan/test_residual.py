"""model.d_residual: the discriminator also sees each image minus its class's mean frame;
and the generator's per-label parts, model.g_mean_frame and model.g_class_norm."""

import numpy as np
import pytest
import torch

from dqn.errors import UserError
from learner.gan.data import FrameSet
from learner.gan.augment import augment_images
from learner.gan.model import (ClassBatchNorm2d, Discriminator, GanParts, Generator,
                               StepSettings, adam, train_step)
from learner.gan.config import GanConfig, GanModelConfig
from dqn.schema import load_config
from learner.gan.job import class_means


def _frames() -> FrameSet:
    """Class 0 all black, class 1 half black and half white: mean grey."""
    images = np.zeros((6, 16, 16, 3), np.uint8)
    images[4:] = 255
    return FrameSet(images, np.array([0, 0, 1, 1, 1, 1]), ("dark", "mixed"))


def test_class_means_are_each_class_mean_frame_in_generator_units():
    means = class_means(_frames(), per_class=True)
    assert means.shape == (2, 3, 16, 16)
    assert torch.allclose(means[0], torch.tensor(-1.0))
    assert torch.allclose(means[1], torch.tensor(0.0))
    overall = class_means(_frames(), per_class=False)
    assert overall.shape == (1, 3, 16, 16)
    assert torch.allclose(overall, torch.tensor(85 / 127.5 - 1))   # 2 white of 6


def test_the_residual_channels_are_the_scaled_difference_from_the_label_mean():
    d = Discriminator(GanModelConfig(d_width=4, d_residual=4.0), 16, num_classes=2)
    assert d.net[0].in_channels == 3 + 3 + 1   # image, residual, label plane
    d.mean_frames.copy_(class_means(_frames(), per_class=True))
    images = torch.full((2, 3, 16, 16), -1.0)   # black: class 0's mean exactly
    out = d.with_residual(images, torch.tensor([0, 1]))
    assert out.shape == (2, 6, 16, 16) and torch.equal(out[:, :3], images)
    assert torch.equal(out[0, 3:], torch.zeros(3, 16, 16))
    assert torch.allclose(out[1, 3:], torch.tensor(-4.0))   # 4 x (-1 - 0)
    assert torch.equal(d.with_residual(out, torch.tensor([0, 1])), out)   # added once
    assert d(images, torch.tensor([0, 1])).shape == (2,)
    off = Discriminator(GanModelConfig(d_width=4), 16, num_classes=2)
    assert off.net[0].in_channels == 4 and torch.equal(off.with_residual(images, None), images)


def test_a_shift_moves_the_residual_with_its_image():
    torch.manual_seed(0)
    d = Discriminator(GanModelConfig(d_width=4, d_residual=1.0, conditional=False), 16, 1)
    d.mean_frames.normal_()
    images = torch.rand(4, 3, 16, 16)
    moved = augment_images(d.with_residual(images, None), "translation")
    # the residual channels stay image minus a shifted mean: their difference from the
    # image channels is one shifted copy of -mean, zero where the shift padded
    shift = moved[:, :3] - moved[:, 3:]
    padded = moved[:, :3] == 0
    assert torch.equal(shift[padded], torch.zeros_like(shift[padded]))
    assert not torch.equal(moved[:, 3:], moved[:, :3] - d.mean_frames)  # shifted, not fixed


def test_a_training_step_with_residual_channels_changes_both_networks():
    torch.manual_seed(0)
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4, d_residual=4.0)
    g, d = Generator(cfg, 16, 2), Discriminator(cfg, 16, 2)
    d.mean_frames.copy_(class_means(_frames(), per_class=True))
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (g, d)]
    parts = GanParts(g, d, adam(g, 1e-3, 0.5), adam(d, 1e-3, 0.5))
    stats = train_step(parts, torch.rand(8, 3, 16, 16) * 2 - 1, torch.randint(2, (8,)),
                       StepSettings(8, "translation"))
    for module, old in zip((g, d), before):
        changed = [k for k, v in module.state_dict().items() if not torch.equal(v, old[k])]
        assert "net.0.weight" in changed
    assert torch.equal(d.mean_frames, before[1]["mean_frames"])   # a buffer, not learned
    assert np.isfinite(stats.loss_d) and 0 < stats.d_real < 1


def test_residual_channels_with_colour_augmentation_are_refused():
    with pytest.raises(UserError, match="model.d_residual = 2.0.*color,translation"):
        load_config("conditional", ("model.d_residual=2", "train.augment=color,translation"),
                    GanConfig)


def test_a_generator_on_mean_frames_starts_at_each_labels_mean_and_learns_it():
    torch.manual_seed(0)
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4, g_mean_frame=True)
    g, d = Generator(cfg, 16, 2), Discriminator(cfg, 16, 2)
    assert g.base.shape == (2, 3, 16, 16)
    g.start_from_mean_frames(class_means(_frames(), per_class=True))
    with torch.no_grad():
        g.net[-2].weight.zero_()   # the convolutions draw nothing: the base alone shows
    out = g(torch.randn(2, 8), torch.tensor([0, 1])).detach()
    assert torch.allclose(out[0], torch.tensor(-0.98)) and torch.allclose(out[1], torch.tensor(0.0))
    before = g.base.detach().clone()
    parts = GanParts(g, d, adam(g, 1e-3, 0.5), adam(d, 1e-3, 0.5))
    train_step(parts, torch.rand(8, 3, 16, 16) * 2 - 1, torch.randint(2, (8,)),
               StepSettings(8))
    assert not torch.equal(g.base, before)   # learned with the generator
    plain = Generator(GanModelConfig(latent_size=8, g_width=4), 16, 2)
    assert plain.base is None and "base" not in plain.state_dict()


def test_class_batch_norm_starts_as_plain_batch_norm_and_learns_a_scale_per_label():
    cfg = GanModelConfig(latent_size=8, g_width=4, d_width=4, g_class_norm=True)
    torch.manual_seed(0)
    g = Generator(cfg, 16, 2)
    torch.manual_seed(0)
    plain = Generator(GanModelConfig(latent_size=8, g_width=4, d_width=4), 16, 2)
    norms = [m for m in g.net if isinstance(m, ClassBatchNorm2d)]
    assert len(norms) == 2 and all(isinstance(m, torch.nn.BatchNorm2d) for m in norms)
    assert norms[0].gain.shape == (2, 8)        # a row per label, one per channel
    z, labels = torch.randn(8, 8), torch.tensor([0, 1] * 4)
    assert torch.allclose(g(z, labels), plain(z, labels))   # zero tables: the same net
    d = Discriminator(cfg, 16, 2)
    parts = GanParts(g, d, adam(g, 1e-3, 0.5), adam(d, 1e-3, 0.5))
    train_step(parts, torch.rand(8, 3, 16, 16) * 2 - 1, labels, StepSettings(8))
    assert norms[0].gain.abs().sum() > 0 and norms[-1].shift.abs().sum() > 0
    g.eval()   # running statistics: an image no longer depends on the rest of its batch
    before = g(z, labels)
    with torch.no_grad():
        norms[-1].shift[1] += 1.0           # label 1's shift moves only label 1's images
    after = g(z, labels)
    assert torch.equal(after[0::2], before[0::2])
    assert (after[1::2] - before[1::2]).abs().mean() > 0.01
    with pytest.raises(UserError, match="model.g_class_norm = true needs model.conditional"):
        load_config("dcgan", ("model.g_class_norm=true",), GanConfig)


def test_a_drawing_class_batch_norm_is_its_running_statistics_affine_gain_and_shift():
    torch.manual_seed(3)
    norm = ClassBatchNorm2d(6, 3)
    with torch.no_grad():
        for tensor in (norm.weight, norm.bias, norm.running_mean, norm.gain, norm.shift):
            tensor.normal_()
        norm.running_var.uniform_(0.2, 3.0)
    x = torch.randn(5, 6, 7, 7).to(memory_format=torch.channels_last)
    labels = torch.tensor([0, 2, 1, 2, 0])
    norm.eval()
    drawn = norm(x, labels)
    # the four steps written out: standardize, the shared affine, the label's gain, shift
    std = (norm.running_var + norm.eps).sqrt()[:, None, None]
    shared = (x - norm.running_mean[:, None, None]) / std * norm.weight[:, None, None] \
        + norm.bias[:, None, None]
    expected = shared * (1 + norm.gain[labels][:, :, None, None]) \
        + norm.shift[labels][:, :, None, None]
    assert torch.allclose(drawn, expected, atol=1e-5)
    assert drawn.is_contiguous(memory_format=torch.channels_last)
    norm.train()           # training still normalizes by the batch's own statistics
    trained = norm(x, labels)
    assert not torch.allclose(trained, drawn, atol=1e-2)
