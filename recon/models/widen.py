"""Function-preserving widening of a trained CRUNet-MR to more channels.

A wider model (``channels`` C' > C) starts from a trained narrower one and computes
exactly the same images at step 0; training then puts the extra channels to use. For
every convolution of the wide model:

* the weights from old input channels to old output channels are the trained ones;
* the weights from the new input channels to every output are zero, so nothing the new
  channels compute reaches an old channel, the data consistency or the output;
* the weights from old inputs to new outputs and the new outputs' biases keep their
  random initialisation, so the new channels carry signal from the start and the zero
  weights get gradients at the first step (zero weights fed by zero activations would
  stay zero).

Where a channel axis holds ``n`` features of C channels one after another (the decoder's
skip concatenation ``[e, u]``, the feature bank's ``n`` cascades), the old channels of
block ``j`` go to ``j * C' + [0, C)``; other axes that grew (the channel attention's
squeezed units) keep their old units first. The activations, the per-sample
normalisation, the recurrences and the channel attention's pooling act channel by
channel, so the old channels' values are unchanged everywhere
(``tests/test_crunet.py`` checks the outputs against the narrow model's).

Used by the trainer's ``train.init_widen`` (:mod:`recon.train.init`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from recon.errors import InputError


def old_positions(old: int, new: int, c_old: int, c_new: int) -> torch.Tensor:
    """Where the ``old`` entries of one axis go among ``new`` (see the module docstring)."""
    if old == new:
        return torch.arange(old)
    if old % c_old == 0 and new == old // c_old * c_new:
        n = old // c_old
        return (torch.arange(n)[:, None] * c_new + torch.arange(c_old)[None, :]).reshape(-1)
    if new > old:
        return torch.arange(old)
    raise InputError(f"cannot widen an axis of {old} entries to {new}")


def _axes(module: nn.Module) -> tuple[int, int]:
    """``(input axis, output axis)`` of a layer's weight."""
    if isinstance(module, nn.ConvTranspose2d):
        return 0, 1
    return 1, 0  # Conv2d (Conv1x1 included), TemporalConv [out, in, 3]


@torch.no_grad()
def widen_into(narrow: nn.Module, wide: nn.Module, c_old: int, c_new: int,
               keep_init: Sequence[str] = ()) -> None:
    """Copy the trained ``narrow`` model into the freshly initialised ``wide`` one in place.

    ``narrow`` and ``wide`` are models of one architecture built with ``c_old`` and
    ``c_new >= c_old`` channels; every leaf layer with a weight is a convolution
    (``Conv2d``, ``ConvTranspose2d``, ``TemporalConv``). Parameters outside those layers
    are copied as they are; those named in ``keep_init`` (parameters the narrow model
    lacks, e.g. ``dc_log_tau`` when hard data consistency becomes noise-weighted) keep
    the wide model's initial values.
    """
    if c_new < c_old:
        raise InputError(f"cannot widen {c_old} channels to fewer ({c_new})")
    old_modules = dict(narrow.named_modules())
    widened: set[str] = set()
    for name, module in wide.named_modules():
        if any(True for _ in module.children()) or getattr(module, "weight", None) is None:
            continue
        widened.update(f"{name}.{p}" for p, _ in module.named_parameters(recurse=False))
        old = old_modules.get(name)
        if old is None or getattr(old, "weight", None) is None:
            raise InputError(f"layer {name!r} of the wide model has no counterpart in the narrow one")
        w_new, w_old = module.weight, old.weight
        if w_new.dim() != w_old.dim() or w_new.shape[2:] != w_old.shape[2:]:
            raise InputError(f"layer {name!r}: weights {tuple(w_old.shape)} cannot widen to {tuple(w_new.shape)}")
        ax_in, ax_out = _axes(module)
        pos_in = old_positions(w_old.shape[ax_in], w_new.shape[ax_in], c_old, c_new)
        pos_out = old_positions(w_old.shape[ax_out], w_new.shape[ax_out], c_old, c_new)
        new_in = torch.ones(w_new.shape[ax_in], dtype=torch.bool)
        new_in[pos_in] = False
        w_new.index_fill_(ax_in, torch.nonzero(new_in).reshape(-1).to(w_new.device), 0.0)
        block = w_new.index_select(ax_out, pos_out.to(w_new.device))
        block.index_copy_(ax_in, pos_in.to(w_new.device), w_old.to(w_new))
        w_new.index_copy_(ax_out, pos_out.to(w_new.device), block)
        if getattr(module, "bias", None) is not None:
            module.bias.index_copy_(0, pos_out.to(w_new.device), old.bias.to(module.bias))
    _copy_unchanged(narrow, wide, widened | set(keep_init))


@torch.no_grad()
def _copy_unchanged(narrow: nn.Module, wide: nn.Module, skip: set[str]) -> None:
    """Copy every parameter outside the widened layers (e.g. the noise-weighted data
    consistency's per-cascade ``dc_log_tau``, [cascades]): no channel axis, same shape."""
    old_params = dict(narrow.named_parameters())
    for name, param in wide.named_parameters():
        if name in skip:
            continue
        old = old_params.get(name)
        if old is None or old.shape != param.shape:
            raise InputError(f"parameter {name!r} {tuple(param.shape)} of the wide model has no counterpart "
                             f"of the same shape in the narrow one"
                             + ("" if old is None else f" ({tuple(old.shape)})"))
        param.copy_(old.to(param))
