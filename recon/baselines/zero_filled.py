"""Zero-filled reconstructions: inverse FFT of the undersampled k-space."""

from __future__ import annotations

import torch

from recon.problem import SliceProblem
from recon.sense import SenseOperator


def zero_filled(p: SliceProblem) -> torch.Tensor:
    """Zero-filled SENSE-combined images: the adjoint ``A^H d`` of the measured k-space.

    ``x = sum_c conj(S_c) F^H (M d_c)`` with the problem's coil maps ``S [c, y, x]``,
    k-space ``d [t, c, y, x]`` (zeros where not sampled) and line mask ``M [t, y]``.
    It keeps the phase (unlike a root-sum-of-squares combination).

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
