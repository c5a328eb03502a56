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
step. The generator minimizes the non-saturating -log D(G(z)) (Goodfellow et al. 2014),
whose gradient stays strong while D easily rejects the fakes, where the minimax
log(1 - D(G(z))) vanishes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from learner.gan.augment import augment_images
from learner.gan.config import GanConfig, GanModelConfig
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

    def __init__(self, channels: int, num_classes: int):
        super().__init__(channels)
        self.gain = nn.Parameter(torch.zeros(num_classes, channels))
        self.shift = nn.Parameter(torch.zeros(num_classes, channels))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("a generator with model.g_class_norm draws for given labels")
        if not self.training and self.running_var is not None:
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
        self.embed = (nn.Embedding(num_classes, image_size * image_size) if cfg.conditional
                      else None)
        channels = [cfg.d_width * 2 ** i for i in range(n)]  # e.g. w 2w 4w 8w
        # A 2-pixel ball is a faint part of a frame, most of its residual (set by the job)
        self.residual = cfg.d_residual
        if self.residual:
            rows = num_classes if cfg.conditional else 1
            self.register_buffer("mean_frames", torch.zeros(rows, 3, image_size, image_size))
        fan_in = 3 + 3 * bool(self.residual) + int(cfg.conditional)
        layers: list[nn.Module] = [nn.Conv2d(fan_in, channels[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [GemmGradConv2d(c_in, c_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(channels[-1], 1, 4, 1, 0, bias=False)]  # 4x4 -> one logit
        self.net = nn.Sequential(*layers)
        # InfoGAN's Q head: reads the first latent_codes noise dimensions back from the
        # 4x4 features of a generated image (see train_step).
        self.code_head = (nn.Linear(channels[-1] * 16, cfg.latent_codes)
                          if cfg.latent_codes else None)
        self.apply(_dcgan_init)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                codes: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One logit per image; with `codes`, also the code head's reading of every
        image. Images of 3 channels, or of 6 from `with_residual` (when d_residual)."""
        images = self.with_residual(images, labels)
        if self.embed is not None:
            size = self.image_size
            images = torch.cat([images, self.embed(labels).view(-1, 1, size, size)], dim=1)
        h = self.net[:-1](images)
        logits = self.net[-1](h).view(-1).float()  # the losses in float32 under autocast
        if not codes:
            return logits
        if self.code_head is None:
            raise ValueError("this discriminator has no code head (model.latent_codes = 0)")
        return logits, self.code_head(h.flatten(1)).float()

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


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)), averaged: the generator's side of the game (non-saturating)."""
    return F.softplus(-fake_logits).mean()


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


class StepSettings(NamedTuple):
    """What one update does besides DCGAN's plain game (see `train_step`)."""

    latent_size: int            # model.latent_size
    augment: str = "none"       # train.augment
    codes: int = 0              # model.latent_codes
    code_weight: float = 1.0    # train.code_weight
    mode_seeking: float = 0.0   # train.mode_seeking

    @classmethod
    def of(cls, cfg: GanConfig) -> StepSettings:
        return cls(cfg.model.latent_size, cfg.train.augment, cfg.model.latent_codes,
                   cfg.train.code_weight, cfg.train.mode_seeking)


def train_step(parts: GanParts, real: torch.Tensor, labels: torch.Tensor | None,
               step: StepSettings) -> StepStats:
    """One discriminator update, then one generator update, on a batch in [-1, 1].

    Every image the discriminator sees, real or fake, goes through the differentiable
    augmentation `step.augment` (see `augment_images`). With `step.codes` > 0 the
    discriminator's code head reads z[:, :codes] back from the fakes, and `code_weight`
    times the mean squared error joins both losses (InfoGAN's continuous codes, Chen et
    al. 2016): the generator must draw its noise visibly. With `mode_seeking` > 0 the
    second half of the fakes repeats the first half's labels with other noise, and that
    multiple of `mode_seeking_loss` joins the generator's loss (MSGAN)."""
    g, d, opt_g, opt_d = parts
    # D's residual channels before the augmentation, so a shift moves them with the image
    with_residual = getattr(d, "module", d).with_residual
    z = torch.randn(real.shape[0], step.latent_size, device=real.device)
    codes = z[:, :step.codes]
    half = real.shape[0] // 2 if step.mode_seeking > 0 else 0
    fake_labels = labels
    if half and labels is not None:   # fake i + half: label i, other noise
        fake_labels = torch.cat([labels[:half], labels[:half], labels[2 * half:]])
    drawn = g(z, fake_labels)
    fake = with_residual(drawn, fake_labels)
    # D step: real and fake in separate batches, so batch norm never mixes them (DCGAN).
    opt_d.zero_grad(set_to_none=True)
    real_logits = d(augment_images(with_residual(real, labels), step.augment), labels)
    fake_logits, code_d = _judge_fakes(d, augment_images(fake.detach(), step.augment),
                                       fake_labels, codes)
    loss_d = discriminator_loss(real_logits, fake_logits) + step.code_weight * code_d
    loss_d.backward()
    opt_d.step()
    # G step on the same fakes against the updated discriminator.
    opt_g.zero_grad(set_to_none=True)
    logits, code_g = _judge_fakes(d, augment_images(fake, step.augment), fake_labels, codes)
    loss_g = generator_loss(logits) + step.code_weight * code_g
    if half:
        loss_g = loss_g + step.mode_seeking * mode_seeking_loss(drawn, z, half)
    loss_g.backward()
    opt_g.step()
    return StepStats(loss_d.item(), loss_g.item(),
                     torch.sigmoid(real_logits).mean().item(),
                     torch.sigmoid(fake_logits).mean().item(), code_g.item())


def _judge_fakes(d: nn.Module, fake: torch.Tensor, labels: torch.Tensor | None,
                 codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logits for the fakes, and the mean squared error of its reading of `codes`
    from them (zero when there are none)."""
    if codes.shape[1] == 0:
        return d(fake, labels), torch.zeros((), device=fake.device)
    logits, read = d(fake, labels, codes=True)
    return logits, F.mse_loss(read, codes)


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, half: int) -> torch.Tensor:
    """MSGAN's term (Mao et al. 2019) for fakes i and i + half, drawn for one label from
    two noise vectors: 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|). It is large when
    different noise gives the same image, so lowering it spreads a label's samples."""
    apart = (fake[:half] - fake[half:2 * half]).abs().float().mean()
    return (z[:half] - z[half:2 * half]).abs().mean() / (apart + 1e-5)


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
