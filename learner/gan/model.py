"""DCGAN (Radford et al. 2016) and its conditional extension, and one training step.

Generator: noise z (plus, when conditional, a label embedding) -> a 4x4 map through a
transposed convolution, then fractionally-strided (transposed, stride 2) convolutions
that double the size and halve the channels, batch normalization and ReLU after each,
tanh at the output so images live in [-1, 1].

Discriminator: the mirror image, strided convolutions that halve the size and double
the channels, LeakyReLU(0.2) throughout and batch normalization inside (none on the
first layer, as DCGAN), ending in one logit. When conditional, the label's embedding is
drawn as one extra image-sized input channel (Mirza & Osindero 2014); d_residual adds
three: the image minus its class's mean frame, scaled.

The two play a game: a discriminator step (real -> 1, fake -> 0), then a generator
step. The generator's loss is the non-saturating -log D(G(z)) by default (strong
gradients early, when D easily rejects fakes); the original minimax log(1 - D(G(z)))
is selectable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from learner.gan.augment import augment_images  # noqa: F401  (re-exported)
from learner.gan.config import GanModelConfig
from learner.gan.conv import GemmGradConv2d, GemmGradConvTranspose2d, MatmulConvTranspose2d


def _num_upsamplings(image_size: int) -> int:
    return int(math.log2(image_size)) - 2  # 4x4 doubled to image_size


class Generator(nn.Module):
    def __init__(self, cfg: GanModelConfig, image_size: int, num_classes: int):
        super().__init__()
        self.latent_size, self.image_size = cfg.latent_size, image_size
        self.num_classes = num_classes
        n = _num_upsamplings(image_size)
        self.embed = (nn.Embedding(num_classes, cfg.embed_size) if cfg.conditional
                      else None)
        channels = [cfg.g_width * 2 ** i for i in reversed(range(n))]  # e.g. 8w 4w 2w w
        fan_in = cfg.latent_size + (cfg.embed_size if cfg.conditional else 0)
        classes = num_classes if cfg.conditional and cfg.g_class_norm else 0

        def norm(c: int) -> nn.BatchNorm2d:
            return ClassBatchNorm2d(c, classes) if classes else nn.BatchNorm2d(c)
        layers: list[nn.Module] = [
            MatmulConvTranspose2d(fan_in, channels[0], 4, 1, 0, bias=False),  # 1 -> 4
            norm(channels[0]), nn.ReLU(True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [GemmGradConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                       norm(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)
        # g_mean_frame: a learned image per label added before the tanh (the job starts
        # it at atanh of the label's mean training frame; see start_from_mean_frames)
        rows = num_classes if cfg.conditional else 1
        self.base = (nn.Parameter(torch.zeros(rows, 3, image_size, image_size))
                     if cfg.g_mean_frame else None)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        h = z[:, :, None, None]
        for layer in self.net[:-1]:
            h = layer(h, labels) if isinstance(layer, ClassBatchNorm2d) else layer(h)
        if self.base is not None:
            h = h + per_label(self.base, labels)
        return self.net[-1](h)

    @torch.no_grad()
    def start_from_mean_frames(self, means: torch.Tensor) -> None:
        """Sets the per-label base images to atanh of `means` (NCHW in [-1, 1], one row
        per label), clipped to +-0.98 so that black and white stay reachable."""
        self.base.copy_(torch.atanh(means.clamp(-0.98, 0.98)))


class ClassBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose scale and shift also depend on the label (conditional batch
    norm, de Vries et al. 2017; as in SNGAN's and BigGAN's generators): the shared
    affine of nn.BatchNorm2d times (1 + gain[label]), plus shift[label]. Both tables
    start at zero, so a new model draws as one with plain batch norm."""

    fold_when_drawing = True   # docs/gan_draw_bench.py times it against False

    def __init__(self, channels: int, num_classes: int):
        super().__init__(channels)
        self.gain = nn.Parameter(torch.zeros(num_classes, channels))
        self.shift = nn.Parameter(torch.zeros(num_classes, channels))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("a generator with model.g_class_norm draws for given labels")
        if self.fold_when_drawing and not self.training and self.running_var is not None:
            # drawing: the running statistics, the affine and the label's gain and shift
            # are one scale and offset per image and channel, one pass over x instead of
            # four (the same maths rounded once; the mean draw is ~20 % faster)
            a = self.weight * torch.rsqrt(self.running_var + self.eps)
            gain = 1 + per_label(self.gain, labels)
            offset = (self.bias - self.running_mean * a) * gain + per_label(self.shift, labels)
            return torch.addcmul(offset.to(x.dtype)[:, :, None, None], x,
                                 (a * gain).to(x.dtype)[:, :, None, None])
        x = super().forward(x)
        gain = per_label(self.gain, labels).to(x.dtype)[:, :, None, None]
        shift = per_label(self.shift, labels).to(x.dtype)[:, :, None, None]
        return x * (1 + gain) + shift


class Discriminator(nn.Module):
    def __init__(self, cfg: GanModelConfig, image_size: int, num_classes: int):
        super().__init__()
        self.image_size = image_size
        n = _num_upsamplings(image_size)
        plane = cfg.conditional and cfg.d_condition == "plane"
        self.embed = nn.Embedding(num_classes, image_size * image_size) if plane else None
        channels = [cfg.d_width * 2 ** i for i in range(n)]  # e.g. w 2w 4w 8w
        # PacGAN (Lin et al. 2018): D judges `pack` images of one label at a time, their
        # channels stacked, so a generator that draws one frame per label is caught.
        self.pack = cfg.pack
        # A 2-pixel ball is a faint part of a frame, most of its residual (set by the job)
        self.residual = cfg.d_residual
        if self.residual:
            rows = num_classes if cfg.conditional else 1
            self.register_buffer("mean_frames", torch.zeros(rows, 3, image_size, image_size))
        fan_in = (3 + 3 * bool(self.residual) + int(plane)) * cfg.pack
        layers: list[nn.Module] = [nn.Conv2d(fan_in, channels[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [GemmGradConv2d(c_in, c_out, 4, 2, 1, bias=False),
                       *([nn.BatchNorm2d(c_out)] if cfg.d_norm.startswith("batch")
                         else []),
                       nn.LeakyReLU(0.2, True)]
        # 4x4 -> one logit; with minibatch_std one more input channel (see forward)
        self.minibatch_std = cfg.minibatch_std
        layers += [nn.Conv2d(channels[-1] + int(cfg.minibatch_std), 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        # InfoGAN's Q head: reads the first latent_codes noise dimensions back from the
        # 4x4 features of a generated image (see train_step).
        self.code_head = (nn.Linear(channels[-1] * 16, cfg.latent_codes * cfg.pack)
                          if cfg.latent_codes else None)
        # Projection (Miyato & Koyama 2018): the logit gains <e_y, features>, a learned
        # per-label template over D's last 4x4 features, instead of the label plane.
        self.project = (nn.Embedding(num_classes, channels[-1] * 16)
                        if cfg.conditional and not plane else None)
        if self.project is not None:  # small, as the convs: the logit starts near 0
            nn.init.normal_(self.project.weight, 0.0, 0.02)
        self.apply(_dcgan_init)
        if cfg.d_norm == "spectral":
            # Miyato et al. 2018: every conv's weight divided by its largest singular
            # value (one power iteration per forward), so D is 1-Lipschitz per layer;
            # unlike batch norm it does not depend on what else is in the batch.
            for conv in [m for m in self.net if isinstance(m, nn.Conv2d)]:
                nn.utils.parametrizations.spectral_norm(conv)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                codes: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One logit per image (per pack of `pack` consecutive images: train_step sorts
        a batch by label first); with `codes`, also the code head's reading of every
        image. Images of 3 channels, or of 6 from `with_residual` (when d_residual)."""
        images = self.with_residual(images, labels)
        if self.embed is not None:
            size = self.image_size
            images = torch.cat([images, self.embed(labels).view(-1, 1, size, size)], dim=1)
        if self.pack > 1:
            images = images.reshape(-1, self.pack * images.shape[1], *images.shape[2:])
            labels = None if labels is None else labels[::self.pack]
        h = self.net[:-1](images)
        if self.minibatch_std:
            # Karras et al. 2018: the batch's spread as a feature, so a generator that
            # draws one image per label (mode collapse) is easy to tell from real batches.
            spread = minibatch_spread(h, labels).view(-1, 1, 1, 1).expand(-1, 1, *h.shape[2:])
            logits = self.net[-1](torch.cat([h, spread], dim=1)).view(-1)
        else:
            logits = self.net[-1](h).view(-1)
        if self.project is not None:
            logits = logits + (self.project(labels) * h.flatten(1)).sum(1)
        logits = logits.float()  # the losses in float32 under bfloat16 autocast
        if not codes:
            return logits
        if self.code_head is None:
            raise ValueError("this discriminator has no code head (model.latent_codes = 0)")
        read = self.code_head(h.flatten(1)).float()   # a pack's codes side by side
        return logits, read.reshape(h.shape[0] * self.pack, -1)

    def with_residual(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Adds d_residual x (image - its class's mean frame) as 3 channels, once (0: off)."""
        if not self.residual or images.shape[1] != 3:
            return images
        mean = per_label(self.mean_frames.to(images.dtype), labels)
        return torch.cat([images, self.residual * (images - mean)], dim=1)


def per_label(rows: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Each label's row of `rows` (one row per label), or the single row when there is
    one (unconditional models keep one)."""
    # index_select, not rows[labels]: its backward adds rows, where indexing's sorts and
    # accumulates (0.37 against 4.9 ms for the generator's 4 x 3 x 64 x 64 mean frames)
    return rows.index_select(0, labels) if labels is not None and len(rows) > 1 else rows[:1]


def minibatch_spread(h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Each sample's minibatch-std feature: the mean standard deviation of the features
    over the samples of its own label (over the whole batch when unconditional). Over a
    batch of mixed labels the spread would be dominated by the differences between
    classes, which a generator that ignores z within each class reproduces exactly."""
    if labels is None:
        return h.std(dim=0).mean().expand(h.shape[0])
    out = h.new_zeros(h.shape[0])
    for label in labels.unique():
        mine = labels == label
        if int(mine.sum()) > 1:
            out = out.index_put((mine,), h[mine].std(dim=0).mean().expand(int(mine.sum())))
    return out


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialization: weights from N(0, 0.02); BN scales from N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def to_unit(images_uint8_nchw: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the generator's tanh range."""
    return images_uint8_nchw.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), averaged: the discriminator's side of the game."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()   # -log D(G(z))
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()   # log(1 - D(G(z)))
    raise ValueError(f"unknown generator loss {kind!r}")


class StepStats(NamedTuple):
    loss_d: float
    loss_g: float
    d_real: float   # mean D(x) on the real batch
    d_fake: float   # mean D(G(z)) seen by the discriminator step
    code: float = 0.0  # the code loss of the generator step (0 without latent codes)


class GanParts(NamedTuple):
    generator: nn.Module       # possibly DDP-wrapped
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def train_step(parts: GanParts, real: torch.Tensor, labels: torch.Tensor | None,
               latent_size: int, g_loss: str, augment: str = "none",
               r1_weight: float = 0.0, codes: int = 0, code_weight: float = 1.0,
               pack: int = 1, joint: bool = False, mode_seeking: float = 0.0) -> StepStats:
    """One discriminator update, then one generator update, on a batch in [-1, 1].

    `augment` names the differentiable augmentation applied to every image the
    discriminator sees (see `augment_images`); `r1_weight` > 0 adds that multiple of
    the R1 penalty, E ||grad_x D(x)||^2 / 2 over the real batch, to the discriminator
    loss on this step (Mescheder et al. 2018; the caller applies it every k steps with
    k times the weight, "lazy" R1 of Karras et al. 2020). With `codes` > 0 the
    discriminator's code head reads z[:, :codes] back from the fakes, and
    `code_weight` times the mean squared error joins both losses (InfoGAN's
    continuous codes, Chen et al. 2016): the generator must draw its noise visibly.
    With `joint`, D sees the real and the fake batch in one pass in both steps, so its
    batch norm normalizes them together (see `_discriminate`). With `mode_seeking` > 0
    the second half of the fakes repeats the first half's labels with other noise, and
    that multiple of `mode_seeking_loss` joins the generator's loss (MSGAN)."""
    g, d, opt_g, opt_d = parts
    # D's residual channels before the augmentation, so a shift moves them with the image
    with_residual = getattr(d, "module", d).with_residual
    if pack > 1 and labels is not None:  # D's packs hold images of one label
        order = labels.argsort(stable=True)
        real, labels = real[order], labels[order]
    z = torch.randn(real.shape[0], latent_size, device=real.device)
    half = real.shape[0] // 2 if mode_seeking > 0 else 0
    fake_labels = labels
    if half and labels is not None:   # fake i + half: label i, other noise
        fake_labels = torch.cat([labels[:half], labels[:half], labels[2 * half:]])
    drawn = g(z, fake_labels)
    fake = with_residual(drawn, fake_labels)
    # D step: real and fake in separate batches, so batch norm never mixes them (DCGAN).
    opt_d.zero_grad(set_to_none=True)
    if r1_weight > 0:
        real = real.detach().requires_grad_(True)
    real_in = with_residual(real, labels)
    real_logits, fake_logits, code_d = _discriminate(
        d, augment_images(real_in, augment), augment_images(fake.detach(), augment),
        (labels, fake_labels), z[:, :codes], joint)
    loss_d = discriminator_loss(real_logits, fake_logits) + code_weight * code_d
    if r1_weight > 0:
        loss_d = loss_d + r1_weight * r1_penalty(real_logits, real)
    loss_d.backward()
    opt_d.step()
    # G step on the same fakes against the updated discriminator.
    opt_g.zero_grad(set_to_none=True)
    beside = augment_images(real_in.detach(), augment) if joint else None
    _, logits, code_g = _discriminate(d, beside, augment_images(fake, augment),
                                      (labels, fake_labels), z[:, :codes], joint)
    loss_g = generator_loss(logits, g_loss) + code_weight * code_g
    if half:
        loss_g = loss_g + mode_seeking * mode_seeking_loss(drawn, z, half)
    loss_g.backward()
    opt_g.step()
    return StepStats(loss_d.item(), loss_g.item(),
                     torch.sigmoid(real_logits).mean().item(),
                     torch.sigmoid(fake_logits).mean().item(), code_g.item())


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, half: int) -> torch.Tensor:
    """MSGAN's term (Mao et al. 2019) for fakes i and i + half, drawn for one label from
    two noise vectors: 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|). It is large when
    different noise gives the same image, so lowering it spreads a label's samples."""
    apart = (fake[:half] - fake[half:2 * half]).abs().float().mean()
    return (z[:half] - z[half:2 * half]).abs().mean() / (apart + 1e-5)


def _discriminate(d: nn.Module, real: torch.Tensor | None, fake: torch.Tensor,
                  labels: tuple[torch.Tensor | None, torch.Tensor | None],
                  codes: torch.Tensor, joint: bool
                  ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """D's logits for the real batch (None when not given) and the fake one, and the mean
    squared error of its reading of `codes` from the fakes (zero when there are none).
    `labels` holds the real batch's labels and the fake batch's.

    Apart (DCGAN), real and fake go through D in passes of their own, so batch norm
    normalizes each by its own statistics and a feature's level shared by one whole
    batch (a paddle in every real frame, none in the fakes) is taken out. Joint, one
    pass over both batches shares the statistics and keeps that difference."""
    read_codes = codes.shape[1] > 0
    real_labels, labels = labels
    if joint:
        out = d(torch.cat([real, fake]),
                None if labels is None else torch.cat([real_labels, labels]),
                codes=read_codes)
        logits, read = out if read_codes else (out, None)
        real_logits, fake_logits = logits.chunk(2)
        read = None if read is None else read.chunk(2)[1]
    else:
        real_logits = None if real is None else d(real, real_labels)
        out = d(fake, labels, codes=read_codes)
        fake_logits, read = out if read_codes else (out, None)
    code = (F.mse_loss(read, codes) if read is not None
            else torch.zeros((), device=fake.device))
    return real_logits, fake_logits, code


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 / 2 over the real batch, differentiable (double backward)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean() / 2


def adam(module: nn.Module, lr: float, beta1: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(beta1, 0.999))


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None,
             batch: int = 256) -> torch.Tensor:
    """uint8 NCHW images on the CPU from noise `z` (and labels), in eval mode (running
    BN stats), on the generator's device."""
    was_training = generator.training
    generator.eval()
    device = next(iter(generator.parameters()), z).device  # z's for a weightless one
    out = [to_uint8(generator(z[i:i + batch].to(device), None if labels is None else
                              labels[i:i + batch].to(device))).cpu()
           for i in range(0, len(z), batch)]
    generator.train(was_training)
    return torch.cat(out)
