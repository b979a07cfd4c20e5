"""Building blocks shared by the recurrent reconstruction networks (CRUNet-MR, CRNN-MRI).

Layout convention: features of a cine are *folded*, time into the batch axis,
``[b * t, ch, y, x]`` with the batch index outermost (sample-major), so that every
convolution that does not depend on the temporal recurrence runs over all frames
of all samples in one call. Only the hidden-to-hidden convolution of a recurrent
layer runs frame by frame (on ``[b, ch, y, x]``, or ``[2b, ...]`` for the two
directions of a bidirectional layer run together). Functions that need the frame
count take it as ``frames``.

Contents: :func:`fold` / :func:`unfold`; :func:`complex_to_channels` /
:func:`channels_to_complex`; :func:`needs_grad`; :func:`normalize` / :func:`denormalize` (per-sample
mean/std) and :func:`normalize_cine` (a complex cine, per sample over all frames); :func:`pad_to_multiple` / :func:`crop_to`; :class:`TemporalConv`
(kernel 3 along time, circular or zero padding); :class:`Conv1x1`; :class:`RowTapConv` (a "same"
convolution to few channels as row taps); :class:`SpatioTemporalConv`
(spatial conv -> ReLU -> temporal conv); :class:`ChannelAttention` (squeeze-and-excitation).
The recurrent units are in :mod:`recon.models.recurrent`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from recon.errors import InputError
from recon.models.same_conv import conv2d_parts

Padding = Literal["circular", "zeros"]

#: Initial bias of the channel-attention squeeze units (see :class:`ChannelAttention`).
SQUEEZE_BIAS_INIT = 1.0


# ---------------------------------------------------------------------------- layout helpers

def fold(x: torch.Tensor) -> torch.Tensor:
    """``[b, t, ...]`` -> ``[b * t, ...]`` (sample-major)."""
    return x.reshape((x.shape[0] * x.shape[1],) + tuple(x.shape[2:]))


def unfold(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``[b * t, ...]`` -> ``[b, t, ...]``."""
    return x.reshape((x.shape[0] // frames, frames) + tuple(x.shape[1:]))


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex images ``[b, t, y, x]`` -> real folded features ``[b * t, 2, y, x]`` (real, imag)."""
    return fold(torch.view_as_real(x).permute(0, 1, 4, 2, 3))


def channels_to_complex(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Real folded features ``[b * t, 2, y, x]`` -> complex images ``[b, t, y, x]``."""
    return torch.view_as_complex(unfold(x, frames).permute(0, 1, 3, 4, 2).contiguous())


def normalize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample standardisation of real features ``[b, ...]``.

    One mean and one (unbiased) standard deviation per sample, over every other axis
    (real and imaginary channels and all frames together, as CRUNet-MR does).
    Returns ``(x_normalised, mean, std)`` with ``mean``/``std`` shaped ``[b, 1, ...]``.
    A constant sample gives std ~ 0: the variance is offset by the dtype's smallest
    normal number, so that neither the value nor its gradient is NaN.
    """
    flat = x.reshape(x.shape[0], -1)
    mean = flat.mean(dim=1)
    var = flat.var(dim=1) if flat.shape[1] > 1 else torch.zeros_like(mean)
    std = torch.sqrt(var + torch.finfo(var.dtype).tiny)
    shape = (-1,) + (1,) * (x.ndim - 1)
    mean, std = mean.reshape(shape), std.reshape(shape)
    return (x - mean) / std, mean, std


def denormalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalize`."""
    return x * std + mean


def normalize_cine(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Complex cine ``[b, t, y, x]`` -> standardised folded features ``[b * t, 2, y, x]``.

    One mean and one standard deviation per *sample*, over all its frames and both
    real and imaginary parts (:func:`normalize` on the unfolded ``[b, t, y, x, 2]``),
    as the reference CRUNet-MR does: the relative intensity of the frames is kept.
    Returns ``(features, mean, std)`` with ``mean``/``std`` repeated per frame,
    ``[b * t, 1, 1, 1]``, ready for :func:`denormalize` on folded features.
    """
    frames = x.shape[1]
    z, mean, std = normalize(torch.view_as_real(x))
    feat = fold(z.permute(0, 1, 4, 2, 3))
    per_frame = lambda v: v.reshape(-1, 1, 1, 1).repeat_interleave(frames, dim=0)  # noqa: E731
    return feat, per_frame(mean), per_frame(std)


def pad_to_multiple(x: torch.Tensor, multiple: int, wrap_rows: int = 0) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pad the last two axes ``(y, x)`` for a network: wrapped rows in y, then zeros to a multiple.

    ``wrap_rows`` rows of each edge are copied beyond the opposite edge (``wrap_rows`` at
    most ``y``): the phase-encode axis y of a Cartesian image is periodic (the DFT's field
    of view wraps), so with the copies the field of view's edge in y is no boundary for the
    convolutions and the result hardly depends on where the object sits along y. Then zeros
    at the end of both axes up to a multiple of ``multiple``.

    Returns the padded tensor and ``(y, x, rows wrapped)`` for :func:`crop_to`.
    """
    ny, nx = x.shape[-2:]
    w = min(int(wrap_rows), ny)
    if w:
        x = torch.cat((x[..., ny - w:, :], x, x[..., :w, :]), dim=-2)
    py, px = (-(ny + 2 * w)) % multiple, (-nx) % multiple
    if py or px:
        x = F.pad(x, (0, px, 0, py))
    return x, (ny, nx, w)


def crop_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The ``(y, x)`` region of the input of :func:`pad_to_multiple` (``size`` is its second
    result; ``(y, x)`` alone for an unwrapped one)."""
    ny, nx, w = (*size, 0) if len(size) == 2 else size
    if x.shape[-2:] == (ny, nx):
        return x
    return x[..., w:w + ny, :nx]


# ---------------------------------------------------------------------------- temporal convs

def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory order (a no-op when it already is).

    Features are kept channels-last: CPU convolutions run faster on it, and the
    pixel-wise (1x1 and temporal) convolutions become plain matrix products.
    Results never depend on the memory order, only the speed does.
    """
    return x.contiguous(memory_format=torch.channels_last)


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records work on any of ``tensors`` now: the test for the in-place
    inference paths (without it, a tensor the caller owns may be overwritten)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def check_model_inputs(k: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> None:
    """The inputs every learned model takes, checked: complex k-space ``[b, t, c, y, x]``,
    complex maps ``[b, c, y, x]``, line mask ``[b, t, y]``; an :class:`InputError` naming
    the first that does not fit."""
    if not (torch.is_tensor(k) and k.is_complex() and k.ndim == 5):
        raise InputError(f"k-space must be complex [b, t, c, y, x], got {getattr(k, 'dtype', type(k))} "
                         f"{tuple(getattr(k, 'shape', ()))}")
    b, t, c, ny, nx = k.shape
    if not (torch.is_tensor(maps) and maps.is_complex() and tuple(maps.shape) == (b, c, ny, nx)):
        raise InputError(f"coil maps must be complex [b, c, y, x] = {(b, c, ny, nx)}, "
                         f"got {getattr(maps, 'dtype', type(maps))} {tuple(getattr(maps, 'shape', ()))}")
    if not (torch.is_tensor(mask) and tuple(mask.shape) == (b, t, ny)):
        raise InputError(f"mask must be [b, t, y] = {(b, t, ny)}, got {tuple(getattr(mask, 'shape', ()))}")


class TemporalConv(nn.Module):
    """Convolution of kernel 3 along time on folded features ``[b * t, in, y, x]``.

    ``y_t = W_0 x_{t-1} + W_1 x_t + W_2 x_{t+1} + bias`` (a ``Conv1d`` over time with
    padding 1 at every pixel). The channels-last pixels ``[b, t, y*x, c]`` (a view, no copy)
    are, read as ``[b, c, t, y*x]``, a channels-last image: the temporal convolution is one
    ``3 x 1`` 2D convolution of it, with zero padding along t. Circular padding adds the two
    wrap-around taps (frame ``t-1`` before frame 0, frame 0 after frame ``t-1``) as one
    in-place product each; where gradients are needed it pads a copy of the frames instead
    (the backward of products into views of the output is slower). Measured against three
    accumulating matrix products over the frames (12 x 144 x 128 x 16, 2 threads: forward
    3.8 -> 2.8 ms, forward and backward 36 -> 28 ms; the shipped crunet_ca's network 0.825 ->
    0.794 s per slice; before that, one product over three concatenated shifted copies was
    4x slower still). ``padding='circular'`` wraps the cardiac cycle; ``'zeros'`` pads with
    zeros. Any frame count works, ``t = 1`` included. Parameters: ``weight [out, in, 3]``,
    ``bias [out]`` (those of ``nn.Conv1d``). Returns channels-last ``[b * t, out, y, x]``.
    """

    def __init__(self, in_channels: int, out_channels: int, padding: Padding = "circular"):
        super().__init__()
        if padding not in ("circular", "zeros"):
            raise InputError(f"temporal padding must be 'circular' or 'zeros', got {padding!r}")
        self.padding = padding
        conv = nn.Conv1d(in_channels, out_channels, 3)  # only for PyTorch's default initialisation
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        n, c, ny, nx = x.shape
        b, p, t = n // frames, ny * nx, frames
        v = channels_last(x).permute(0, 2, 3, 1).reshape(b, t, p, c)  # a view
        kernel = self.weight.unsqueeze(-1)  # [out, in, 3, 1]
        grad = needs_grad(x, self.weight, self.bias)
        wrap = self.padding == "circular"
        if wrap and grad:  # training: the backward in parts (recon.models.same_conv.conv2d_parts)
            padded = torch.cat([v[:, -1:], v, v[:, :1]], dim=1)  # [b, t + 2, p, c]
            y = conv2d_parts(padded.permute(0, 3, 1, 2), kernel, self.bias, (0, 0), (1, 1))  # [b, out, t, p]
        else:
            y = conv2d_parts(v.permute(0, 3, 1, 2), kernel, self.bias, (1, 0), (1, 1))
        out_ch = y.shape[1]
        frames_out = y.permute(0, 2, 3, 1)  # [b, t, p, out], contiguous
        if wrap and not grad:  # the wrap-around taps, in place (in autocast's dtype, which y has)
            taps = self.weight.to(y.dtype).permute(2, 1, 0)  # [3, in, out]: tap j reads frame t - 1 + j
            frames_out[:, 0].baddbmm_(v[:, t - 1].to(y.dtype), taps[0].expand(b, c, out_ch))
            frames_out[:, t - 1].baddbmm_(v[:, 0].to(y.dtype), taps[2].expand(b, c, out_ch))
        return frames_out.reshape(n, ny, nx, out_ch).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size=3, padding={self.padding}"


class Conv1x1(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters and state dict) computed as one matrix product.

    On channels-last features the pixels are rows of a matrix, so the convolution
    is a single ``addmm``; PyTorch's CPU path for 1x1 convolutions is much slower.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.reshape(self.out_channels, self.in_channels)
        return F.linear(channels_last(x).permute(0, 2, 3, 1), w, self.bias).permute(0, 3, 1, 2)

    def add_to(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out + self(x)``; without gradients, accumulated into ``out`` (a fresh channels-last
        tensor of the caller's) by one in-place matrix product, so that neither the product
        nor the sum is a new tensor (12 x 16 x 144 x 128, 2 threads: 5.6 -> 4.1 ms)."""
        if needs_grad(out, x, self.weight) or not out.is_contiguous(memory_format=torch.channels_last):
            return out + self(x)
        pixels = out.permute(0, 2, 3, 1).reshape(-1, self.out_channels)  # a view of out
        w = self.weight.reshape(self.out_channels, self.in_channels).to(out.dtype)
        pixels.addmm_(channels_last(x).permute(0, 2, 3, 1).reshape(-1, self.in_channels).to(out.dtype), w.t())
        if self.bias is not None:
            pixels.add_(self.bias.to(out.dtype))
        return out


class RowTapConv(nn.Conv2d):
    """A "same" ``k x k`` ``nn.Conv2d`` (odd ``k``, stride 1, same parameters and state dict)
    for few output channels, computed as one ``1 x k`` convolution to ``k * out`` channels
    (each kernel row's taps along x) and ``k - 1`` shifted additions along y.

    A convolution to 2 channels leaves most of the CPU's vector lanes idle; to ``k * out``
    it fills them. CRUNet-MR's 5 x 5 tail (16 -> 2 channels, 12 x 144 x 128, fp32, channels-last):
    9.3 -> 5.9 ms at 2 threads, 18.3 -> 11.2 ms at 1 (same result to rounding). Returns
    ``[n, out, y, x]`` contiguous.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        if kernel_size % 2 != 1:
            raise InputError(f"row-tap convolution needs an odd kernel, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, o, h = self.kernel_size[0], self.out_channels, self.kernel_size[0] // 2
        rows = self.weight.permute(2, 0, 1, 3).reshape(k * o, self.in_channels, 1, k)  # [dy * o + oc, in, 1, k]
        taps = F.conv2d(x, rows, None, padding=(0, h)).unflatten(1, (k, o))  # [n, k, o, y, x]
        out = taps[:, h].contiguous()  # the centre row: out[y] += taps[h][y]
        if self.bias is not None:
            out += self.bias.view(1, o, 1, 1)
        for dy in range(k):  # out[y] += taps[dy][y + dy - h] where that row exists
            s = dy - h
            if s < 0:
                out[..., -s:, :] += taps[:, dy, :, :s]
            elif s > 0:
                out[..., :-s, :] += taps[:, dy, :, s:]
        return out


class SpatioTemporalConv(nn.Module):
    """``spatial`` (a 2D conv or transposed conv) -> ReLU -> :class:`TemporalConv`, on folded features.

    The (2+1)D unit of CRUNet-MR: used for the down/up-sampling steps and the
    convolutions after each recurrent layer.
    """

    def __init__(self, spatial: nn.Module, channels: int, padding: Padding = "circular"):
        super().__init__()
        self.spatial = spatial
        self.temporal = TemporalConv(channels, channels, padding)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal(self.spatial(x).relu_(), frames)  # in place on the fresh conv output


def pool(x: torch.Tensor) -> torch.Tensor:
    """Global average over ``(y, x)``: ``[n, c, y, x] -> [n, c, 1, 1]``, in ``x``'s dtype.

    ``adaptive_avg_pool2d`` rather than ``mean``: on bfloat16 features ``mean`` first copies
    the whole tensor to float32 (the same values, 2x the time on 12 x 16 x 144 x 128)."""
    return F.adaptive_avg_pool2d(x, 1)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (the CALayer of RCAN / PromptMR).

    Global average pool over ``(y, x)`` of each image (for folded cine features:
    each frame) -> 1x1 conv ``channels -> channels // reduction`` (at least 1) ->
    ReLU -> 1x1 conv back -> sigmoid; the input is scaled channel-wise by the result.

    Initialisation: the squeeze bias starts at :data:`SQUEEZE_BIAS_INIT` (= 1), not
    PyTorch's small random value. The pooled descriptors of an untrained network are
    small (RMS 0.05-0.13, squeeze pre-activations below 0.4 in 99 % of cases at 8-64
    channels), so with a random bias about half of the squeezed units sit below zero
    for every input: the ReLU passes no gradient to them, and at 8 channels
    (reduction 4 leaves 2 units per module) whole modules got exactly zero gradient.
    With the bias at 1 every unit starts in the ReLU's linear range at every width;
    the weights keep PyTorch's default (random) initialisation, which breaks the
    symmetry between units.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        if reduction < 1:
            raise InputError(f"channel-attention reduction must be >= 1, got {reduction}")
        squeezed = max(1, channels // reduction)
        self.squeeze = Conv1x1(channels, squeezed)
        self.excite = Conv1x1(squeezed, channels)
        nn.init.constant_(self.squeeze.bias, SQUEEZE_BIAS_INIT)

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:
        """The channel weights ``[n, channels, 1, 1]`` in (0, 1) from pooled descriptors ``[n, channels, 1, 1]``."""
        return torch.sigmoid(self.excite(torch.relu(self.squeeze(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(pool(x))
