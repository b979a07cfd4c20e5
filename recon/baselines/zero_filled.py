"""Zero-filled reconstructions: inverse FFT of the undersampled k-space."""

from __future__ import annotations

import numpy as np
import torch

from recon.fft import ifft2c
from recon.kspace import rss, to_recon_grid
from recon.problem import SliceProblem
from recon.sense import SenseOperator
from recon.slicedata import SliceData


def zero_filled_rss(s: SliceData) -> np.ndarray:
    """Zero-filled, root-sum-of-squares coil combination.

    Needs no coil maps. Returns complex64 ``[t, y, x]`` (real, non-negative values):
    the magnitude baseline every method must beat.
    """
    k = to_recon_grid(s.kspace, s.encoding.recon_matrix)
    return rss(ifft2c(k)).astype(np.complex64)


def zero_filled(p: SliceProblem) -> torch.Tensor:
    """Zero-filled SENSE-combined images: the adjoint ``A^H d`` of the measured k-space.

    ``x = sum_c conj(S_c) F^H (M d_c)`` with the problem's coil maps ``S [c, y, x]``,
    k-space ``d [t, c, y, x]`` (zeros where not sampled) and line mask ``M [t, y]``.
    Unlike :func:`zero_filled_rss` it keeps the phase.

    Parameters
    ----------
    p : the slice problem (recon grid).

    Returns
    -------
    complex64 tensor ``[t, y, x]`` on the problem's device.
    """
    k, mask, maps = p.batched()
    op = SenseOperator(maps.to(torch.complex64), mask)
    return op.adjoint(k.to(torch.complex64))[0]
