"""The GAN's convolutions with matrix-product gradients (learner/gan/conv.py) compute what
torch's own layers compute, and run where they are meant to."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from learner.gan.conv import (GemmGradConv2d, GemmGradConvTranspose2d, MatmulConvTranspose2d,
                              _StrideTwo)


def _grads(y: torch.Tensor, inputs: tuple[torch.Tensor, ...], seed: int = 1):
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed),
                     dtype=torch.float64)
    return torch.autograd.grad(y.double(), inputs, dy)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("size", [6, 7, 8])
def test_the_matrix_product_gives_the_convolutions_gradients_exactly(transposed, size):
    torch.manual_seed(0)
    c_in, c_out = 5, 3
    x = torch.randn(2, c_in, size, size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*((c_in, c_out) if transposed else (c_out, c_in)), 4, 4,
                    dtype=torch.float64, requires_grad=True)
    conv = F.conv_transpose2d if transposed else F.conv2d
    want = conv(x, w, None, 2, 1)
    got = _StrideTwo.apply(x, w, transposed)
    assert torch.equal(got, want)
    for g, r in zip(_grads(got, (x, w)), _grads(want, (x, w))):
        assert g.shape == r.shape
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer, plain, wide, narrow", [
    (GemmGradConv2d, nn.Conv2d, (128, 32, 8), (32, 64, 16)),
    (GemmGradConvTranspose2d, nn.ConvTranspose2d, (32, 64, 4), (64, 32, 4)),
])
def test_wide_bfloat16_layers_take_the_matrix_product_and_agree_with_torch(
        layer, plain, wide, narrow):
    for (c_in, c_out, size), taken in [(wide, True), (narrow, False)]:
        torch.manual_seed(0)
        ours, theirs = layer(c_in, c_out, 4, 2, 1, bias=False), plain(c_in, c_out, 4, 2, 1,
                                                                      bias=False)
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(16, c_in, size, size).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        outs = []
        for net in (ours, theirs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = net(x)
            outs.append((y, _grads(y, (x, net.weight))))
        (y, grads), (y_ref, grads_ref) = outs
        assert ("_StrideTwo" in type(y.grad_fn).__name__) is taken, (c_in, c_out)
        assert y.dtype == y_ref.dtype == torch.bfloat16
        torch.testing.assert_close(y.float(), y_ref.float(), rtol=0, atol=0)
        for g, r in zip(grads, grads_ref):
            assert g.dtype == r.dtype and g.shape == r.shape
            assert ((g - r).abs().max() / r.abs().max()).item() < 2e-2
        with torch.no_grad():  # float32 and sampling keep torch's path
            assert ours(x).grad_fn is None
        assert "_StrideTwo" not in type(ours(x).grad_fn).__name__


def test_the_first_generator_layer_is_a_matrix_product_of_its_noise():
    torch.manual_seed(0)
    ours = MatmulConvTranspose2d(10, 6, 4, 1, 0, bias=False).double()
    theirs = nn.ConvTranspose2d(10, 6, 4, 1, 0, bias=False).double()
    theirs.load_state_dict(ours.state_dict())
    z = torch.randn(3, 10, 1, 1, dtype=torch.float64, requires_grad=True)
    y, want = ours(z), theirs(z)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    for g, r in zip(_grads(y, (z, ours.weight)), _grads(want, (z, theirs.weight))):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    bigger = torch.randn(3, 10, 2, 2, dtype=torch.float64)  # not 1x1: torch's own path
    torch.testing.assert_close(ours(bigger), theirs(bigger))
