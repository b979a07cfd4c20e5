"""Cartesian cine sampling masks (CMRxRecon style) and their analysis.

A cine mask samples whole phase-encode (ky) lines: a block of ``n_acs`` fully
sampled central lines (the ACS, default 24) plus every R-th line, the lattice
aligned on the k-space centre line ``n_ky // 2`` so the centre is always on it.
CMRxRecon2023 uses the same mask in every frame (``shifted=False``, the default
here); ``shifted=True`` moves the lattice by one line per frame (frame ``t``
samples offset ``t % R``), as in TSENSE / k-t acquisitions.
"""

from __future__ import annotations

import numpy as np

from recon.errors import InputError

#: Acceleration factors of the CMRxRecon2023 cine task (24 is the simulated extreme).
CMRX_ACCELERATIONS = (4, 8, 10, 24)


def acs_indices(n_ky: int, n_acs: int = 24, center: int | None = None) -> np.ndarray:
    """ky indices of the central calibration block.

    Returns ``n_acs`` consecutive indices ``[center - n_acs // 2, center + n_acs - n_acs // 2)``,
    int64 array of shape ``[n_acs]``. ``center`` defaults to ``n_ky // 2``.
    """
    if n_ky < 1:
        raise InputError(f"number of ky lines must be >= 1, got {n_ky}")
    if n_acs < 0 or n_acs > n_ky:
        raise InputError(f"ACS width {n_acs} must be between 0 and the number of ky lines ({n_ky})")
    center = n_ky // 2 if center is None else int(center)
    start = center - n_acs // 2
    if start < 0 or start + n_acs > n_ky:
        raise InputError(f"ACS block of {n_acs} lines around centre {center} does not fit in {n_ky} lines")
    return np.arange(start, start + n_acs, dtype=np.int64)


def cine_mask(
    n_ky: int,
    acceleration: int,
    n_acs: int = 24,
    n_frames: int = 1,
    shifted: bool = False,
    center: int | None = None,
) -> np.ndarray:
    """Line mask for a Cartesian cine acquisition.

    Parameters
    ----------
    n_ky : number of phase-encode lines of the encoded matrix.
    acceleration : R, keep every R-th line outside the ACS (R >= 1).
    n_acs : number of fully sampled central lines.
    n_frames : number of cardiac phases (rows of the result).
    shifted : if True, frame ``t`` uses lattice offset ``t % R``; otherwise all
        frames share one mask (CMRxRecon).
    center : index of the k-space centre line; default ``n_ky // 2``.

    Returns
    -------
    bool array ``[n_frames, n_ky]``, True where a line is acquired.
    """
    if int(acceleration) != acceleration or acceleration < 1:
        raise InputError(f"acceleration must be a positive integer, got {acceleration}")
    if n_frames < 1:
        raise InputError(f"number of frames must be >= 1, got {n_frames}")
    acceleration = int(acceleration)
    center = n_ky // 2 if center is None else int(center)
    acs = acs_indices(n_ky, n_acs, center)
    ky = np.arange(n_ky)
    mask = np.zeros((n_frames, n_ky), dtype=bool)
    for t in range(n_frames):
        offset = (t % acceleration) if shifted else 0
        mask[t] = (ky - center - offset) % acceleration == 0
        mask[t, acs] = True
    return mask


def estimate_acceleration(mask: np.ndarray, acs: np.ndarray | None = None) -> int:
    """Nominal acceleration R of a line mask, from the spacing outside the ACS.

    Parameters
    ----------
    mask : bool ``[ky]`` or ``[t, ky]``.
    acs : ky indices of the calibration block, excluded from the spacing estimate.

    Returns
    -------
    The most common gap between consecutive sampled lines outside the ACS
    (1 for a fully sampled mask). Frames are analysed separately and the
    largest per-frame value is returned.
    """
    mask = np.atleast_2d(np.asarray(mask, dtype=bool))
    outside = np.ones(mask.shape[-1], dtype=bool)
    if acs is not None and len(acs):
        outside[np.asarray(acs)] = False
    best = 1
    for row in mask:
        lines = np.flatnonzero(row & outside)
        if len(lines) < 2:
            continue
        gaps = np.diff(lines)
        gaps = gaps[gaps > 0]
        values, counts = np.unique(gaps, return_counts=True)
        best = max(best, int(values[np.argmax(counts)]))
    return best


def effective_acceleration(mask: np.ndarray) -> float:
    """Total lines over acquired lines, averaged over frames (includes the ACS)."""
    mask = np.atleast_2d(np.asarray(mask, dtype=bool))
    return float(mask.shape[-1] / max(mask.sum(axis=-1).mean(), 1))
