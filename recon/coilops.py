"""Coil and mask helpers of the SENSE model: masks in k-space's broadcast shape, coil images
``S x`` and their combination ``S^H``, shared by every operator built on them
(:mod:`recon.sense`, :mod:`recon.line_normal`).

Shapes: images ``[b, t, y, x]``, coil images and k-space ``[b, t, c, y, x]``, maps
``[b, c, y, x]`` or ``[b, t, c, y, x]``, masks ``[b, t, y]`` (line masks), ``[b, t, y, x]`` or 5D.
"""

from __future__ import annotations

import torch

from recon.errors import InputError


def expand_mask(mask: torch.Tensor, ndim_k: int = 5) -> torch.Tensor:
    """Mask in a shape that broadcasts against k-space ``[b, t, c, y, x]``.

    ``[b, t, y]`` (line mask) -> ``[b, t, 1, y, 1]``; ``[b, t, y, x]`` -> ``[b, t, 1, y, x]``;
    a 5D mask is returned as is. The result has the real dtype matching k-space use.
    """
    if mask.dtype == torch.bool:
        mask = mask.to(torch.float32)
    if mask.ndim == 3:
        return mask[:, :, None, :, None]
    if mask.ndim == 4:
        return mask[:, :, None]
    if mask.ndim == 5:
        return mask
    raise InputError(f"mask must be [b, t, y], [b, t, y, x] or 5D, got shape {tuple(mask.shape)}")


def line_mask(mask: torch.Tensor) -> torch.Tensor:
    """The sampled phase-encode lines, bool ``[b, t, y]``, of a line mask ``[b, t, y]`` or of any
    mask :func:`expand_mask` takes (its first readout column)."""
    return (mask if mask.ndim == 3 else expand_mask(mask)[:, :, 0, :, 0]) > 0


def maps5(maps: torch.Tensor) -> torch.Tensor:
    """Coil maps ``[b, c, y, x]`` (one set for all frames) or ``[b, t, c, y, x]`` -> 5D."""
    if maps.ndim == 4:
        return maps[:, None]
    if maps.ndim == 5:
        return maps
    raise InputError(f"coil maps must be [b, c, y, x] or [b, t, c, y, x], got shape {tuple(maps.shape)}")


def expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil images ``S x``: ``[b, t, y, x]`` -> ``[b, t, c, y, x]``."""
    return x[:, :, None] * maps5(maps)


def reduce(coil_images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil combination ``sum_c conj(S_c) x_c``: ``[b, t, c, y, x]`` -> ``[b, t, y, x]``."""
    return (coil_images * maps5(maps).conj()).sum(dim=2)
