"""Zero-filled reconstruction: inverse FFT of the undersampled k-space."""

from __future__ import annotations

import numpy as np

from recon.fft import ifft2c
from recon.kspace import rss, to_recon_grid
from recon.slicedata import SliceData


def zero_filled_rss(s: SliceData) -> np.ndarray:
    """Zero-filled, root-sum-of-squares coil combination.

    Needs no coil maps. Returns complex64 ``[t, y, x]`` (real, non-negative values):
    the magnitude baseline every method must beat.
    """
    k = to_recon_grid(s.kspace, s.encoding.recon_matrix)
    return rss(ifft2c(k)).astype(np.complex64)
