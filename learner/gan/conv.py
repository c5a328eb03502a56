"""Stride-2 convolutions whose weight gradient is one matrix product on the CPU.

DCGAN's inner layers are 4x4 kernels of stride 2 and padding 1. On a CPU, oneDNN's
bfloat16 weight gradient for the deep ones (a 4x4 or 8x8 map of 128-256 channels over a
batch of 64) runs at a fraction of its forward speed: 12 ms against 2.5 ms for the same
product written as patches x gradient. These layers compute it that way:

    dW[o, (kh, kw, c)] = sum over output pixels p of dY[p, o] * patch_X[p, (kh, kw, c)]

with the patches taken by a strided view of the padded channels-last input (one copy,
no unfold), so the product runs on the bfloat16 matrix kernels (AMX where there are
tiles) a linear layer uses. The forward pass and the input gradient stay oneDNN's.
Same parameters, same state dict and the same numbers up to rounding as nn.Conv2d /
nn.ConvTranspose2d; the usual path runs elsewhere (a GPU, other kernel sizes, a bias,
a layer too narrow to gain: fewer than `MIN_PATCH` values in a patch, float32, where
oneDNN is as fast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_PATCH = 1024  # 4x4 patches of 64+ channels: faster from there; 32-channel ones lose


class GemmGradConv2d(nn.Conv2d):
    """nn.Conv2d (4x4, stride 2, padding 1, no bias) with the matrix-product weight
    gradient on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _applies(self, x, self.in_channels):
            return super().forward(x)
        x, w = _autocast(x, self.weight)
        return _StrideTwo.apply(x, w, False)


class GemmGradConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (4x4, stride 2, padding 1, no bias) with the matrix-product
    weight gradient on the CPU: the transposed layer's weight gradient is the forward
    layer's with input and output gradient swapped, its patches taken from the output
    gradient."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None
                ) -> torch.Tensor:
        if output_size is not None or not _applies(self, x, self.out_channels):
            return super().forward(x, output_size)
        x, w = _autocast(x, self.weight)
        return _StrideTwo.apply(x, w, True)


class MatmulConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d that, on a 1x1 input (the generator's first layer: noise ->
    4x4 map), runs as the matrix product it is: [n, in] x [in, out * k * k]. oneDNN
    took 8 ms a step for it on the CPU, forward and backward."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None
                ) -> torch.Tensor:
        if (output_size is not None or x.shape[-2:] != (1, 1)
                or self.bias is not None
                or self.stride != (1, 1) or self.padding != (0, 0) or self.groups != 1
                or tuple(self.output_padding) != (0, 0)):
            return super().forward(x, output_size)
        y = x.flatten(1) @ self.weight.flatten(1)  # autocast casts a product as a conv
        return y.view(x.shape[0], self.out_channels, *self.kernel_size).contiguous(
            memory_format=torch.channels_last)


def _applies(layer: nn.Module, x: torch.Tensor, patch_channels: int) -> bool:
    bfloat16 = (torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                else x.dtype) == torch.bfloat16  # in float32 oneDNN is as fast
    return (bfloat16 and x.device.type == "cpu" and torch.is_grad_enabled()
            and layer.weight.requires_grad and layer.bias is None
            and layer.kernel_size == (4, 4) and layer.stride == (2, 2)
            and layer.padding == (1, 1) and layer.dilation == (1, 1)
            and layer.groups == 1 and tuple(layer.output_padding) == (0, 0)
            and 16 * patch_channels >= MIN_PATCH)


def _autocast(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The casts autocast would make for a convolution (a custom autograd function is
    outside its op list)."""
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        return x.to(dtype), w.to(dtype)
    return x, w.to(x.dtype)


class _StrideTwo(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, transposed: bool) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.transposed = transposed
        conv = F.conv_transpose2d if transposed else F.conv2d
        return conv(x, w, None, 2, 1)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, w = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.aten.convolution_backward(
                dy, x, w, None, [2, 2], [1, 1], [1, 1], ctx.transposed, [0, 0], 1,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            # conv: patches of x against dy; transposed: patches of dy against x
            image, per_pixel = (dy, x) if ctx.transposed else (x, dy)
            patches = _patches(image)  # [pixels, 4 * 4 * channels of image]
            rows = per_pixel.permute(0, 2, 3, 1).reshape(patches.shape[0], -1)
            dw = (rows.t() @ patches).view(rows.shape[1], 4, 4, image.shape[1])
            dw = dw.permute(0, 3, 1, 2)  # [rows' channels, image channels, 4, 4]
        return dx, dw, None


def _patches(image: torch.Tensor) -> torch.Tensor:
    """The 4x4 patches (stride 2, padding 1) of NCHW `image`, one row per output pixel,
    ordered (kh, kw, channel): a strided view of the padded channels-last image."""
    n, c, h, w = image.shape
    padded = F.pad(image.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # [n, h+2, w+2, c]
    s_n, s_h, s_w, s_c = padded.stride()
    view = padded.as_strided((n, h // 2, w // 2, 4, 4, c),
                             (s_n, 2 * s_h, 2 * s_w, s_h, s_w, s_c))
    return view.reshape(n * (h // 2) * (w // 2), 16 * c)
