"""Receiver noise of a simulated coil array: a random inter-coil covariance and noise drawn with it.

:func:`noise_covariance` draws a Hermitian positive-definite covariance ``[c, c]``
(correlation falling off with the coil index distance, per-coil variances around 1);
:func:`correlated_noise` draws complex Gaussian noise with that covariance across the
coil axis. (:func:`recon.noise.noise_covariance` is the other direction: a covariance
estimated from a measured noise scan.)
"""

from __future__ import annotations

import numpy as np

from recon.checks import check_count
from recon.errors import InputError


def noise_covariance(
    n_coils: int, rng: np.random.Generator | int | None = None, correlation: float = 0.1
) -> np.ndarray:
    """Random receiver noise covariance.

    Correlation coefficients fall off with the coil index distance
    (``correlation ** |i - j|`` with random phases, blended 80/20 with a random
    Wishart correlation matrix), and per-coil variances lie in [0.7, 1.3].

    Parameters
    ----------
    n_coils : int
        Number of coils, >= 1.
    rng : numpy.random.Generator, int or None
        Source of the random parts.
    correlation : float
        Typical magnitude of the correlation coefficient between neighbouring
        coils, in [0, 1).

    Returns
    -------
    numpy.ndarray
        complex64 [n_coils, n_coils], Hermitian positive definite.
    """
    n_coils = check_count("n_coils", n_coils)
    if not np.isfinite(correlation) or not 0.0 <= correlation < 1.0:
        raise InputError(f"correlation must be in [0, 1), got {correlation!r}")
    g = np.random.default_rng(rng)
    idx = np.arange(n_coils)
    phases = np.exp(1j * g.uniform(0.0, 2 * np.pi, n_coils))
    banded = correlation ** np.abs(idx[:, None] - idx[None, :]) * np.outer(phases, phases.conj())
    m = g.standard_normal((n_coils, 2 * n_coils)) + 1j * g.standard_normal((n_coils, 2 * n_coils))
    wishart = m @ m.conj().T
    d = np.sqrt(np.real(np.diag(wishart)))
    wishart /= np.outer(d, d)
    corr = (1.0 - 0.2 * correlation) * banded + 0.2 * correlation * wishart  # unit diagonal, PD
    std = np.sqrt(g.uniform(0.7, 1.3, n_coils))
    cov = corr * np.outer(std, std)
    cov = 0.5 * (cov + cov.conj().T)
    return cov.astype(np.complex64)


def correlated_noise(
    shape: tuple[int, ...],
    cov: np.ndarray,
    rng: np.random.Generator | int | None = None,
    coil_axis: int = -3,
) -> np.ndarray:
    """Complex Gaussian noise with covariance ``cov`` across the coil axis.

    Parameters
    ----------
    shape : tuple of int
        Output shape, e.g. ``(t, c, ky, kx)``; ``shape[coil_axis]`` must equal
        ``cov.shape[0]``.
    cov : numpy.ndarray
        complex [c, c] Hermitian positive-definite covariance (e.g. from
        :func:`noise_covariance`); ``E[n n^H] = cov``.
    rng : numpy.random.Generator, int or None
        Source of the noise.
    coil_axis : int
        Position of the coil axis in ``shape`` (default -3: ``[..., c, ky, kx]``).

    Returns
    -------
    numpy.ndarray
        complex64 of ``shape``.
    """
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be a tuple of integers, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise InputError(f"shape must not hold negative sizes, got {shape}")
    cov = np.asarray(cov)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] < 1:
        raise InputError(f"cov must be a square [c, c] matrix, got shape {cov.shape}")
    if not -len(shape) <= coil_axis < len(shape):
        raise InputError(f"coil_axis {coil_axis} is out of range for shape {shape}")
    n_coils = cov.shape[0]
    if shape[coil_axis] != n_coils:
        raise InputError(
            f"shape[{coil_axis}] = {shape[coil_axis]} does not match the covariance size {n_coils}"
        )
    cov = cov.astype(np.complex128)
    if not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.conj().T, rtol=1e-5, atol=1e-6 * np.abs(cov).max()):
        raise InputError("cov must be a finite Hermitian matrix")
    try:
        chol = np.linalg.cholesky(0.5 * (cov + cov.conj().T))
    except np.linalg.LinAlgError:
        raise InputError("cov is not positive definite") from None
    g = np.random.default_rng(rng)
    moved = list(shape)
    moved.append(moved.pop(coil_axis % len(shape)))
    # single precision throughout (the output is complex64): interleaved real/imag
    # float32 normals viewed as complex64, ~10x faster than complex128 for big arrays
    white = g.standard_normal(moved[:-1] + [2 * moved[-1]], dtype=np.float32).view(np.complex64)
    noise = white @ (chol.T / np.sqrt(2.0)).astype(np.complex64)  # row vectors: n = L w
    return np.moveaxis(noise, -1, coil_axis % len(shape))


__all__ = ["noise_covariance", "correlated_noise"]
