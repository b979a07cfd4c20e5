"""Recurrent units of the folded-feature networks (CRUNet-MR): :class:`CRNNCell`, a
convolutional RNN cell recurrent over time and over iterations (cascades), and
:class:`CRNNLayer`, that cell run over the frames forward, backward or in both directions.

Features are folded as in :mod:`recon.models.layers` (``[b * t, ch, y, x]``, channels-last).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from recon.errors import InputError
from recon.models.layers import channels_last, fold, needs_grad, unfold
from recon.models.same_conv import conv2d_same

Direction = Literal["forward", "backward", "bidirectional"]


class CRNNCell(nn.Module):
    """Convolutional RNN cell, recurrent over time and over iterations (cascades).

    ``h_t = ReLU(i2h(x_t) + h2h(h_{t-1}) + ih2ih(H_t))``, with ``H`` the hidden state of
    the same unit in the previous iteration. All three are ``kernel x kernel`` convs
    with the given dilation ('same' padding). ``iteration=False`` builds a cell
    without ``ih2ih`` (for the first cascade of a network whose cascades do not share
    weights: there ``H`` is always zero and ``ih2ih`` would never learn).

    The work is split for speed: :meth:`drive` computes the non-recurrent part for
    all frames at once (``i2h``, ``ih2ih`` and the ``h2h`` bias); :meth:`step` adds
    ``h2h(h_{t-1})`` (weights only) for one frame and applies the ReLU. ``h_{-1} = 0``,
    so the first frame needs no ``h2h`` call at all.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, dilation: int = 1,
                 iteration: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise InputError(f"CRNN kernel size must be odd, got {kernel_size}")
        pad = dilation * (kernel_size - 1) // 2
        self.hidden = hidden
        self.dilation = dilation
        self.i2h = nn.Conv2d(in_channels, hidden, kernel_size, padding=pad, dilation=dilation)
        self.h2h = nn.Conv2d(hidden, hidden, kernel_size, padding=pad, dilation=dilation)
        self.ih2ih = nn.Conv2d(hidden, hidden, kernel_size, padding=pad, dilation=dilation) if iteration else None

    def drive(self, x: torch.Tensor, h_iter: torch.Tensor | None) -> torch.Tensor:
        """Non-recurrent input of every frame: ``i2h(x) + ih2ih(H) + b_h2h`` on folded ``[n, ch, y, x]``.

        ``h_iter=None`` means ``H = 0`` (first iteration): ``ih2ih`` then contributes its bias only.
        """
        if self.ih2ih is None and h_iter is not None:
            raise InputError("this CRNN cell was built without an iteration input (iteration=False)")
        # the biases go into the i2h convolution: one bias add inside it instead of in-place adds of
        # float32 biases to its output, which under bf16 autocast copied the output to float32 and back
        bias = self.i2h.bias + self.h2h.bias
        if self.ih2ih is not None and h_iter is None:
            bias = bias + self.ih2ih.bias
        pre = conv2d_same(x, self.i2h.weight, bias, self.dilation)
        if self.ih2ih is not None and h_iter is not None:  # a fresh tensor: the addition may run in place
            pre.add_(conv2d_same(h_iter, self.ih2ih.weight, self.ih2ih.bias, self.dilation))
        return pre

    def step(self, pre_t: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """One time step: ``ReLU(pre_t + h2h(h))`` on ``[n, hidden, y, x]`` (``h=None`` is the zero state)."""
        if h is None:
            return torch.relu(pre_t)
        out = conv2d_same(h, self.h2h.weight, None, self.dilation)
        return out.add_(pre_t).relu_()  # in place on the fresh conv output: no extra buffers

    def step_(self, pre_t: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """:meth:`step` written over ``pre_t`` (no gradients; the same sum in the same order) and returned."""
        if h is not None:
            pre_t.add_(conv2d_same(h, self.h2h.weight, None, self.dilation))
        return pre_t.relu_()


def _stack_frames(hs: list[torch.Tensor]) -> torch.Tensor:
    """Frames ``[n, ch, y, x]`` (channels-last) -> ``[n, t, ch, y, x]`` stored channels-last."""
    return torch.stack([h.permute(0, 2, 3, 1) for h in hs], dim=1).permute(0, 1, 4, 2, 3)


class CRNNLayer(nn.Module):
    """A :class:`CRNNCell` run over the frames of folded features ``[b * t, in, y, x]``.

    ``direction``: ``'forward'`` (CRNN-TI-F, frame 0 first), ``'backward'`` (CRNN-TI-B,
    last frame first) or ``'bidirectional'`` (one cell, both directions, outputs summed:
    BCRNN). The two directions of a bidirectional layer run as one batch of ``2b``,
    so each time step is one convolution call. Returns ``[b * t, hidden, y, x]``
    (channels-last).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, dilation: int = 1,
                 direction: Direction = "forward", iteration: bool = True):
        super().__init__()
        if direction not in ("forward", "backward", "bidirectional"):
            raise InputError(f"direction must be forward, backward or bidirectional, got {direction!r}")
        self.direction = direction
        self.cell = CRNNCell(in_channels, hidden, kernel_size, dilation, iteration)

    def forward(self, x: torch.Tensor, frames: int, h_iter: torch.Tensor | None = None) -> torch.Tensor:
        """``x [b*t, in, y, x]``, ``h_iter [b*t, hidden, y, x]`` or None -> ``[b*t, hidden, y, x]``."""
        pre = unfold(channels_last(self.cell.drive(x, h_iter)), frames)
        if not needs_grad(pre, self.cell.h2h.weight):
            return fold(self._recur_in_place(pre))
        b, t = pre.shape[:2]
        # unbind, not pre[:, s]: the backward of one unbind is one stack, while each
        # indexing would allocate and fill a gradient the size of all frames
        pre_t = pre.unbind(1)
        h = None
        hs = []
        if self.direction == "bidirectional":
            for s in range(t):
                h = self.cell.step(torch.cat([pre_t[s], pre_t[t - 1 - s]], dim=0), h)
                hs.append(h.split(b))
            out = _stack_frames([o[0] for o in hs]) + _stack_frames([o[1] for o in reversed(hs)])
        else:
            for s in self._order(t):
                h = self.cell.step(pre_t[s], h)
                hs.append(h)
            out = _stack_frames(hs if self.direction == "forward" else hs[::-1])
        return fold(out)

    def _recur_in_place(self, pre: torch.Tensor) -> torch.Tensor:
        """The recurrence without gradients, each frame's state written over its drive in ``pre``
        ``[b, t, hidden, y, x]`` (channels-last frames, the caller's fresh tensor): no per-frame
        state tensors and no stacked copy of them (the same sums in the same order as the
        path with gradients, so the same values). A bidirectional layer runs its directions
        on a copy of the drives whose backward half is in reversed time, so that each step
        reads both directions' states as one ``[2b, ...]`` view; the two halves are summed
        into the forward one at the end. Returns ``[b, t, hidden, y, x]``."""
        b, t = pre.shape[:2]
        if self.direction == "bidirectional":
            p = pre.permute(0, 1, 3, 4, 2)  # [b, t, y, x, hidden], contiguous
            both = torch.stack([p, p.flip(1)]).permute(0, 1, 2, 5, 3, 4)  # [2, b, t, hidden, y, x]
            frames = [both[:, :, s].flatten(0, 1) for s in range(t)]  # views [2b, hidden, y, x]
        else:
            frames = [pre[:, s] for s in self._order(t)]
        h = None
        for cur in frames:
            h = self.cell.step_(cur, h)
        if self.direction != "bidirectional":
            return pre
        out = both[0]
        for s in range(t):
            out[:, s].add_(both[1][:, t - 1 - s])
        return out

    def _order(self, t: int) -> range:
        """The frames of a one-way layer in the order it visits them."""
        return range(t) if self.direction == "forward" else range(t - 1, -1, -1)

    def extra_repr(self) -> str:
        return f"direction={self.direction}"


# ---------------------------------------------------------------------------- attention
