"""Noise pre-whitening from a noise scan (what Gadgetron's NoiseAdjustGadget does).

With noise samples ``n [c, N]`` the coil noise covariance is
``Psi = n n^H / (N - 1)``; the whitening matrix ``W = L^{-1}`` with
``Psi = L L^H`` (Cholesky) makes the noise of ``W y`` white with unit variance.
Gadgetron also scales by the ratio of dwell times and the receiver noise bandwidth
(``sqrt(2 * dwell_data * bandwidth / dwell_noise)``), which :func:`noise_scale`
computes; a uniform scale changes no reconstruction but keeps intensities
comparable with Gadgetron's own chains.
"""

from __future__ import annotations

import numpy as np

from recon.errors import InputError


def noise_covariance(noise: np.ndarray) -> np.ndarray:
    """Sample covariance ``[c, c]`` of noise samples ``[c, N]``."""
    noise = np.asarray(noise)
    if noise.ndim != 2 or noise.shape[1] < 2:
        raise InputError(f"noise samples must be [coils, samples] with >= 2 samples, got {noise.shape}")
    return (noise @ noise.conj().T) / (noise.shape[1] - 1)


def whitening_matrix(noise: np.ndarray) -> np.ndarray:
    """``W [c, c]`` (complex64) with ``W Psi W^H = I`` from noise samples ``[c, N]``."""
    psi = noise_covariance(noise)
    try:
        chol = np.linalg.cholesky(psi.astype(np.complex128))
    except np.linalg.LinAlgError:
        raise InputError("noise covariance is not positive definite (dead or duplicated channel?)") from None
    return np.linalg.inv(chol).astype(np.complex64)


def noise_scale(data_dwell_us: float, noise_dwell_us: float, bandwidth: float = 0.793) -> float:
    """Gadgetron's scale ``sqrt(2 * data dwell * receiver noise bandwidth / noise dwell)``."""
    if data_dwell_us <= 0 or noise_dwell_us <= 0:
        return 1.0
    return float(np.sqrt(2.0 * data_dwell_us * bandwidth / noise_dwell_us))


def whiten(data: np.ndarray, w: np.ndarray, coil_axis: int = 0) -> np.ndarray:
    """Apply ``W`` along ``coil_axis`` of ``data`` (e.g. ``[c, samples]`` or ``[t, c, ky, kx]``)."""
    moved = np.moveaxis(np.asarray(data), coil_axis, -1)
    if moved.shape[-1] != w.shape[0]:
        raise InputError(f"whitening matrix is for {w.shape[0]} coils, data has {moved.shape[-1]}")
    return np.moveaxis(moved @ w.T, -1, coil_axis).astype(np.complex64)
