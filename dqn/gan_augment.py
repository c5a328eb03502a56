"""Differentiable augmentations of what the GAN's discriminator sees (DiffAugment,
Zhao et al. 2020): shifts, cutout and colour, on batches in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dqn.gan_config import AUGMENTATIONS


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
    padded = F.pad(x, (sx, sx, sy, sy)).permute(0, 2, 3, 1)   # B, H + 2sy, W + 2sx, C
    dy = torch.randint(0, 2 * sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * sx + 1, (b, 1, 1), device=x.device)
    crops = _sliced if x.device.type == "cpu" else _indexed
    return crops(padded, dy, dx, h, w).permute(0, 3, 1, 2)


def _sliced(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int
            ) -> torch.Tensor:
    """Image i's h x w window at (dy[i], dx[i]) of `padded` (B, H, W, C): a slice per
    image, stacked. The same crops as `_indexed`, 2.7x faster forward and backward on a
    2-core CPU (4.7 against 12.8 ms for the preset's 64 x 6 x 64 x 64 in bfloat16; the
    whole update 8 % faster with `per_label`'s, docs/gan_step_bench.py): its backward is
    a copy per image, where indexing's is a scattered accumulation. On a GPU the
    offsets would have to come back to the host: `_indexed` there."""
    return torch.stack([img[y:y + h, c:c + w] for img, y, c in zip(
        padded.unbind(0), dy.view(-1).tolist(), dx.view(-1).tolist())])


def _indexed(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int
             ) -> torch.Tensor:
    """`_sliced`'s crops by one advanced index (DiffAugment's way)."""
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
