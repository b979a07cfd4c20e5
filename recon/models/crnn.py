"""CRNN-MRI (Qin et al., IEEE TMI 2018), multi-coil through SENSE.

A cascade of ``nc`` identical, weight-shared blocks, each followed by hard k-space
data consistency. One block, on the current images as 2 real channels (real, imag):

1. a bidirectional convolutional RNN layer over time (BCRNN). One cell, shared by
   both directions: ``h_t = ReLU(i2h(x_t) + h2h(h_{t-1}) + ih2ih(H_t))`` where ``H`` is
   this layer's output in the previous cascade (the "CRNN-i" connection, zero in the
   first); the layer's output is the sum of the forward and backward sequences;
2. ``nd - 2`` CRNN-i layers, recurrent over cascades only:
   ``x_j = ReLU(conv_x(x_{j-1}) + conv_h(x_j of the previous cascade))``;
3. an output conv to 2 channels, added to the block input (residual);
4. ``x <- S^H F^H [(1 - M) F S x + M k0]`` (:class:`recon.sense.DataConsistency`).

The network starts from the SENSE adjoint ``x0 = A^H k``.

Implementation (differs from the reference code in speed only, not in the function):
every convolution that does not depend on the time recurrence runs over all frames
at once (time folded into batch, time-major ``[t * b, C, y, x]``); only the
hidden-to-hidden conv of the BCRNN is sequential, and the forward and backward
directions share each of those calls (stacked along the batch axis), so a block makes
``t`` sequential convolutions, not ``2 t``. Convolutions of zero states (first step of
the recurrence, first cascade) are skipped: they equal their bias. Summed pairs of
convs add their biases once and accumulate in place (fewer large temporaries).

One addition to the paper: the input is scaled per sample by the RMS magnitude of
``x0`` and the output scaled back, so the model does not depend on the arbitrary scale
of raw k-space (the network is then scale-equivariant; DC is linear, so this is
exact). Per-sample only: a batch gives the same results as separate runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recon.models.config import CRNNConfig
from recon.models.layers import check_model_inputs, crop_to, pad_to_multiple
from recon.sense import DataConsistency, SenseOperator

__all__ = ["CRNNMRI"]


def _conv(cin: int, cout: int, ks: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, ks, padding=ks // 2)


def _conv_sum(a: torch.Tensor, conv_a: nn.Conv2d, b: torch.Tensor | None, conv_b: nn.Conv2d,
              extra_bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv_a(a) + conv_b(b) [+ extra_bias]`` with the biases added once; ``b=None`` means zeros."""
    bias = conv_a.bias + conv_b.bias
    if extra_bias is not None:
        bias = bias + extra_bias
    out = F.conv2d(a, conv_a.weight, bias, padding=conv_a.padding)
    if b is not None:
        out.add_(F.conv2d(b, conv_b.weight, None, padding=conv_b.padding))
    return out


class _BCRNN(nn.Module):
    """Bidirectional CRNN layer with an iteration (cross-cascade) input.

    forward(x [t*b, cin, y, x] time-major, h_iter [t*b, nf, y, x] or None, t) ->
    [t*b, nf, y, x]: sum of the forward-in-time and backward-in-time sequences.
    """

    def __init__(self, cin: int, nf: int, ks: int):
        super().__init__()
        self.i2h = _conv(cin, nf, ks)
        self.h2h = _conv(nf, nf, ks)
        self.ih2ih = _conv(nf, nf, ks)

    def forward(self, x: torch.Tensor, h_iter: torch.Tensor | None, t: int) -> torch.Tensor:
        # All non-recurrent terms over all frames at once; h2h's bias folded in.
        pre = _conv_sum(x, self.i2h, h_iter, self.ih2ih, extra_bias=self.h2h.bias)
        b = pre.shape[0] // t
        pre = pre.unflatten(0, (t, b))  # [t, b, nf, y, x]
        # Forward (frame s) and backward (frame t-1-s) directions stacked on the batch
        # axis: one conv per step. hs[s] = [h_fwd(frame s); h_bwd(frame t-1-s)].
        w, pad = self.h2h.weight, self.h2h.padding
        h = torch.cat([pre[0], pre[t - 1]]).relu_()
        hs = [h]
        for s in range(1, t):
            h = F.conv2d(h, w, None, padding=pad)
            h[:b] += pre[s]
            h[b:] += pre[t - 1 - s]
            h = h.relu_()
            hs.append(h)
        return torch.stack([hs[f][:b] + hs[t - 1 - f][b:] for f in range(t)]).flatten(0, 1)


class CRNNMRI(nn.Module):
    """CRNN-MRI with SENSE data consistency, built from a :class:`CRNNConfig`.

    ``channels`` = nf (paper 64), ``cascades`` = nc (5), ``layers`` = nd (5): one
    BCRNN layer, ``nd - 2`` CRNN-i layers and one output conv per cascade, all weights
    shared over cascades (about 0.30 M parameters at 64/5/5). Kernel size 3.
    """

    kernel_size = 3

    def __init__(self, config: CRNNConfig | None = None):
        super().__init__()
        config = CRNNConfig() if config is None else config
        config.validate()
        self.config = config
        nf, ks = config.channels, self.kernel_size
        self.bcrnn = _BCRNN(2, nf, ks)
        self.conv_x = nn.ModuleList(_conv(nf, nf, ks) for _ in range(config.layers - 2))
        self.conv_h = nn.ModuleList(_conv(nf, nf, ks) for _ in range(config.layers - 2))
        self.conv_out = _conv(nf, 2, ks)

    def forward(self, k: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Reconstruct images from undersampled multi-coil k-space.

        Parameters
        ----------
        k : complex ``[b, t, c, y, x]``, centred k-space on the recon grid (only the
            sampled lines are used).
        mask : ``[b, t, y]`` line mask, bool or 0/1 real.
        maps : complex ``[b, c, y, x]`` coil sensitivities (unit sum of squares).

        Returns
        -------
        Complex images ``[b, t, y, x]`` in the dtype of ``k``.
        """
        check_model_inputs(k, mask, maps)
        b, t, _, ny, nx = k.shape
        rdtype = self.conv_out.weight.dtype

        # Per-sample scale normalisation (undone at the end).
        x = SenseOperator(maps, mask).adjoint(k)  # [b, t, y, x]
        scale = x.abs().pow(2).mean(dim=(1, 2, 3)).sqrt()
        scale = scale.clamp_min(torch.finfo(scale.dtype).tiny)[:, None, None, None]
        x = x / scale
        k0 = k / scale[..., None]

        dc = DataConsistency(k0, maps, mask)
        h_bcrnn: torch.Tensor | None = None
        h_layers: list[torch.Tensor | None] = [None] * len(self.conv_x)
        for _ in range(self.config.cascades):
            # [b, t, y, x] complex -> time-major real channels [t*b, 2, y, x], rows wrapped in y
            xr = torch.view_as_real(x).permute(1, 0, 4, 2, 3).reshape(t * b, 2, ny, nx).to(rdtype)
            xr, size = pad_to_multiple(xr, 1, self.config.wrap_rows)
            feat = self.bcrnn(xr, h_bcrnn, t)
            h_bcrnn = feat
            for j, (cx, ch) in enumerate(zip(self.conv_x, self.conv_h)):
                feat = _conv_sum(feat, cx, h_layers[j], ch).relu_()
                h_layers[j] = feat
            out = crop_to(xr + self.conv_out(feat), size)  # residual
            out = out.reshape(t, b, 2, ny, nx).permute(1, 0, 3, 4, 2).to(k.real.dtype).contiguous()
            x = dc(torch.view_as_complex(out))
        return x * scale
