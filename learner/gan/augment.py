"""Differentiable augmentations of what the GAN's discriminator sees (DiffAugment,
Zhao et al. 2020): shifts, cutout and colour, on batches in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learner.gan.config import AUGMENTATIONS


def augment_images(images: torch.Tensor, kind: str) -> torch.Tensor:
    """Differentiable augmentation of a batch the discriminator is about to see
    (DiffAugment, Zhao et al. 2020): real and fake batches get the same kind of random
    transforms, so the discriminator cannot memorize a few thousand frames, while the
    generator, whose gradient flows through the transforms, still learns unaltered
    frames. `translation` shifts each image by up to 1/8 of its size, filling with
    zeros (mid-grey); `cutout` then blanks a random square of half its size; `color`
    first moves each image's brightness, saturation and contrast at random."""
    if kind == "none":
        return images
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}")
    out = _translate(_color(images) if "color" in kind else images, 0.125)
    if "cutout" in kind:
        out = _cutout(out, 0.5)
    return out


def _translate(x: torch.Tensor, ratio: float) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio)), max(1, int(w * ratio))
    dy = torch.randint(0, 2 * sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * sx + 1, (b, 1, 1), device=x.device)
    if x.device.type == "cpu":
        return _Shift.apply(x, (dy.view(-1) - sy).tolist(), (dx.view(-1) - sx).tolist())
    padded = F.pad(x, (sx, sx, sy, sy)).permute(0, 2, 3, 1)   # B, H + 2sy, W + 2sx, C
    return _indexed(padded, dy, dx, h, w).permute(0, 3, 1, 2)


class _Shift(torch.autograd.Function):
    """Image i moved by (-dy[i], -dx[i]) pixels, what leaves the frame dropped and zeros
    (mid-grey) where nothing comes in: the crops of `_indexed` from the zero-padded
    batch, without the padded batch. One slice copy per image forward and one back
    (the adjoint of a shift is the opposite shift): on a 2-core CPU 3.5 ms forward and
    backward for the preset's 64 x 6 x 64 x 64 in bfloat16, where padding and stacking a
    slice per image takes 5.1 and `_indexed` more (its backward scatters). On a GPU the
    offsets would have to come back to the host: `_indexed` there."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dy: list[int], dx: list[int]) -> torch.Tensor:
        ctx.offsets = dy, dx
        return _shifted(x, dy, dx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        dy, dx = ctx.offsets
        return _shifted(grad, [-o for o in dy], [-o for o in dx]), None, None


def _shifted(x: torch.Tensor, dy: list[int], dx: list[int]) -> torch.Tensor:
    """out[i, :, y, c] = x[i, :, y + dy[i], c + dx[i]] where that lies in x, else 0."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for i, (oy, ox) in enumerate(zip(dy, dx)):
        out[i, :, max(0, -oy):h - max(0, oy), max(0, -ox):w - max(0, ox)] = \
            x[i, :, max(0, oy):h - max(0, -oy), max(0, ox):w - max(0, -ox)]
    return out


def _indexed(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int
             ) -> torch.Tensor:
    """Image i's h x w window at (dy[i], dx[i]) of `padded` (B, H, W, C), all by one
    advanced index (DiffAugment's way)."""
    b = padded.shape[0]
    rows = torch.arange(h, device=padded.device).view(1, h, 1) + dy
    cols = torch.arange(w, device=padded.device).view(1, 1, w) + dx
    return padded[torch.arange(b, device=padded.device).view(b, 1, 1), rows, cols]


def _color(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment's colour transforms on [-1, 1] images: brightness + U(-0.5, 0.5),
    saturation x U(0, 2) about each pixel's grey, contrast x U(0.5, 1.5) about the
    image's mean."""
    b = x.shape[0]
    u = torch.rand(3, b, 1, 1, 1, device=x.device, dtype=x.dtype)
    x = x + (u[0] - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (u[1] * 2) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u[2] + 0.5) + mean


def _cutout(x: torch.Tensor, ratio: float) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio), int(w * ratio)
    top = torch.randint(0, h - ch + 1, (b, 1, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)
