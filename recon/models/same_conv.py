"""Same-size convolutions with a faster backward for training on the CPU.

PyTorch's CPU convolution backward computes the input, weight and bias gradients in one call.
On the recurrent networks' training strips that call is slower than its parts asked for one by
one (13 frames x 16 channels x 172 x 24, 3 x 3, channels-last, 2 threads: 5.1-6.0 ms against
3.8-4.5; 32 input channels 9.2-14.2 against 7.9-11.4), and its weight gradient of a dilated
convolution (CRUNet-MR's levels 1 and 2 use dilation 2 and 4) is slow in itself: 4.2-4.5 ms at
dilation 2 on 13 x 16 x 86 x 12 against 1.4 ms undilated. :func:`conv2d_same` therefore runs
training convolutions through a function whose backward asks PyTorch for the input gradient
and (undilated) the weight gradient separately, sums the bias gradient, and computes a dilated
weight gradient as ``k * k`` matrix products, one per kernel tap: ``dW[:, :, i, j] = G^T X_ij``
with ``G [pixels, out]`` the output gradient and ``X_ij [pixels, in]`` the input window of tap
``(i, j)`` (a strided view of the zero-padded input, copied to a matrix), 1.5-2.2 ms there.

It does so where it pays: a gradient for the weight is needed, at least :data:`MIN_BATCH`
images a call (the per-frame recurrent steps keep PyTorch's), float32 or float64 outside
autocast (bf16 training keeps PyTorch's path); everywhere else it is ``F.conv2d``. Same values
(the tests compare both in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recon.errors import InputError

_DTYPES = (torch.float32, torch.float64)
#: images per call from which the parts pay: on one frame (the recurrent steps) the k * k
#: products cost more than PyTorch's kernel (86 x 12 x 16 channels, dilation 2: 0.52 against 0.21 ms);
#: from 4 frames on they cost 0.5-0.95x its time (measured 1, 4, 13 images x 12-64 columns)
MIN_BATCH = 4


def conv2d_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int) -> torch.Tensor:
    """Stride-1 convolution of ``x [n, in, y, x]`` with ``weight [out, in, k, k]`` (odd ``k``) and
    zero padding ``dilation * (k - 1) / 2`` on each side: ``[n, out, y, x]``; the backward in
    parts (:func:`conv2d_parts`) from :data:`MIN_BATCH` images a call."""
    k = weight.shape[-1]
    pad = dilation * (k - 1) // 2
    if x.shape[0] < MIN_BATCH:
        return F.conv2d(x, weight, bias, padding=pad, dilation=dilation)
    return conv2d_parts(x, weight, bias, (pad, pad), (dilation, dilation))


def conv2d_parts(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int],
                 dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride 1, padding, dilation)``, ``x [n, in, y, x]``, ``weight
    [out, in, kh, kw]``; where a weight gradient is needed (float32/64, CPU, no autocast) with the
    backward in parts (module docstring)."""
    if (torch.is_grad_enabled() and weight.requires_grad and x.dtype in _DTYPES and weight.dtype == x.dtype
            and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")):
        return _Parts.apply(x, weight, bias, tuple(padding), tuple(dilation))
    return F.conv2d(x, weight, bias, padding=padding, dilation=dilation)


def weight_gradient(x: torch.Tensor, grad: torch.Tensor, kernel: tuple[int, int], dilation: tuple[int, int],
                    pad: tuple[int, int]) -> torch.Tensor:
    """``dL/dW [out, in, kh, kw]`` of a stride-1 convolution from its input ``x [n, in, y, x]`` and
    output gradient ``grad [n, out, y', x']``: one matrix product per kernel tap."""
    cin = x.shape[1]
    out_ch, ny, nx = grad.shape[1:]
    (kh, kw), (dh, dw), (ph, pw) = kernel, dilation, pad
    padded = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # [n, y + 2 ph, x + 2 pw, in]
    g = grad.permute(0, 2, 3, 1).reshape(-1, out_ch).t()  # [out, n * y' * x']
    taps = x.new_empty(kh, kw, out_ch, cin)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dh: i * dh + ny, j * dw: j * dw + nx]
            torch.mm(g, window.reshape(-1, cin), out=taps[i, j])
    return taps.permute(2, 3, 0, 1)


class _Parts(torch.autograd.Function):
    """``F.conv2d`` (stride 1) forward; backward in parts (module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation, ctx.has_bias = padding, dilation, bias is not None
        return F.conv2d(x, weight, bias, padding=padding, dilation=dilation)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p, d = list(ctx.padding), list(ctx.dilation)
        gx = gw = gb = None
        parts = ([1, 1], p, d, False, [0, 0], 1)  # stride .. groups of convolution_backward
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(grad, x, weight, None, *parts, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            if max(d) > 1:
                gw = weight_gradient(x, grad, tuple(weight.shape[-2:]), tuple(d), tuple(p))
            else:
                gw = torch.ops.aten.convolution_backward(grad, x, weight, None, *parts, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None


class SameConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters and state dict) of odd square kernel, stride 1 and "same"
    padding at its dilation, run by :func:`conv2d_same`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        if kernel_size % 2 != 1:
            raise InputError(f"a same-size convolution needs an odd kernel, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                         dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_same(x, self.weight, self.bias, self.dilation[0])
