"""Receive coil sensitivities from Biot-Savart, noise covariance, correlated noise.

The array is a set of circular surface loops placed on an ellipse a little
outside the body (anterior and posterior arrays, one or more rings along the
slice axis z, neighbouring rings staggered in angle), each loop's normal pointing
into the body. The field of a unit current in each loop is integrated numerically
(Biot-Savart over straight segments) at the pixel positions of the imaging plane
z = 0, and the sensitivity is its transverse component

    S_c(y, x) = B_x - i B_y,

with x along the image columns, y along the image rows (pointing down) and z the
slice normal (the counter-rotating B1^- component by reciprocity, up to a global
conjugation that depends on the sense of precession). A random constant phase per
channel (cables and receivers) is applied on top.
"""

from __future__ import annotations

import numpy as np

from recon.errors import InputError

_N_SEGMENTS = 64
_WIRE_MM = 5.0  # conductor half-width: regularises the field next to the wire
_STANDOFF_MM = 10.0  # the wires run this far outside the body surface
_ARRAY_HALF_SPAN_DEG = 70.0  # anterior / posterior arrays cover +-70 degrees


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return np.random.default_rng(rng)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_pair(name: str, value: tuple[float, float], integer: bool = False) -> tuple[float, float]:
    try:
        pair = tuple(value)
    except TypeError:
        raise InputError(f"{name} must be a pair (y, x), got {value!r}") from None
    if len(pair) != 2:
        raise InputError(f"{name} must be a pair (y, x), got {value!r}")
    if integer:
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
            raise InputError(f"{name} must hold two integers >= 1, got {value!r}")
        return (int(pair[0]), int(pair[1]))
    try:
        out = (float(pair[0]), float(pair[1]))
    except (TypeError, ValueError):
        raise InputError(f"{name} must hold two numbers, got {value!r}") from None
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise InputError(f"{name} must hold two finite numbers > 0, got {value!r}")
    return out


def _loop_layout(
    n_coils: int, n_rings: int, body: tuple[float, float], g: np.random.Generator
) -> list[np.ndarray]:
    """Wire polygons [segments + 1, 3] (x, y, z in mm) of every loop.

    Each loop is a circle drawn on the cylinder over the stand-off ellipse (a
    flexible array wrapped around the torso): arc length along the ellipse and
    z are its two coordinates.
    """
    by, bx = body[0] + _STANDOFF_MM, body[1] + _STANDOFF_MM
    fine = np.linspace(-np.pi, 3 * np.pi, 8193)  # two turns, so arcs never wrap
    ex, ey = bx * np.cos(fine), by * np.sin(fine)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(ex), np.diff(ey)))])
    arc_at = lambda phi: np.interp(phi, fine, arc)  # noqa: E731

    half_span = np.deg2rad(_ARRAY_HALF_SPAN_DEG)
    per_ring = [n_coils // n_rings + (r < n_coils % n_rings) for r in range(n_rings)]
    most_per_array = max(1, (max(per_ring) + 1) // 2)
    array_arc = arc_at(0.5 * np.pi + half_span) - arc_at(0.5 * np.pi - half_span)
    radius = float(np.clip(0.55 * array_arc / most_per_array, 40.0, 80.0))
    dz = 1.5 * radius
    psi = np.linspace(0.0, 2 * np.pi, _N_SEGMENTS + 1)
    loops = []
    for r, n_ring in enumerate(per_ring):
        z = (r - 0.5 * (n_rings - 1)) * dz
        n_ant = (n_ring + (r % 2 == 0)) // 2  # alternate which array gets the odd coil
        for centre_angle, n_array in ((1.5 * np.pi, n_ant), (0.5 * np.pi, n_ring - n_ant)):
            if n_array == 0:
                continue
            spacing = 2 * half_span / n_array
            stagger = spacing * (r / n_rings - 0.5 * (n_rings - 1) / n_rings)
            for k in range(n_array):
                phi = centre_angle - half_span + spacing * (k + 0.5) + stagger + g.uniform(-0.05, 0.05)
                rad = radius * g.uniform(0.95, 1.05)
                s = arc_at(phi) + rad * np.sin(psi)
                wire_phi = np.interp(s, arc, fine)
                wire = np.stack(
                    [bx * np.cos(wire_phi), by * np.sin(wire_phi), z + g.uniform(-5.0, 5.0) + rad * np.cos(psi)],
                    axis=1,
                )
                loops.append(wire)
    return loops


def _loop_field(px: np.ndarray, py: np.ndarray, wire: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transverse Biot-Savart field (B_x, B_y), arbitrary units, of a unit current
    along the closed polygon ``wire`` [s + 1, 3] at points (px, py, 0), each [n]."""
    dl = np.diff(wire, axis=0)  # [s, 3]
    mid = 0.5 * (wire[1:] + wire[:-1])
    bx_out = np.empty(px.shape)
    by_out = np.empty(px.shape)
    rz = -mid[:, 2]  # z of the points is 0
    for start in range(0, px.size, 16384):
        sl = slice(start, start + 16384)
        rx = px[sl, None] - mid[None, :, 0]
        ry = py[sl, None] - mid[None, :, 1]
        d2 = rx * rx + ry * ry + (rz * rz + _WIRE_MM**2)
        w = 1.0 / (d2 * np.sqrt(d2))  # |R|^-3
        # B = sum_s dl x R / |R|^3
        bx_out[sl] = w @ (dl[:, 1] * rz) - (ry * w) @ dl[:, 2]
        by_out[sl] = (rx * w) @ dl[:, 2] - w @ (dl[:, 0] * rz)
    return bx_out, by_out


def coil_sensitivities(
    n_coils: int = 10,
    shape: tuple[int, int] = (128, 128),
    fov_mm: tuple[float, float] = (320.0, 320.0),
    rng: np.random.Generator | int | None = None,
    n_rings: int | None = None,
    body_axes_mm: tuple[float, float] | None = None,
) -> np.ndarray:
    """Smooth complex receive sensitivities of a surface-loop array.

    Parameters
    ----------
    n_coils : int
        Number of coils, >= 1.
    shape : tuple of int
        Image matrix ``(ny, nx)``, each >= 1 (odd sizes work).
    fov_mm : tuple of float
        Field of view ``(y, x)`` in mm; pixel ``(i, j)`` sits at
        ``((i - ny // 2) * fov_y / ny, (j - nx // 2) * fov_x / nx)``.
    rng : numpy.random.Generator, int or None
        Source of the position jitter and of the channel phases.
    n_rings : int, optional
        Rings of loops along the slice axis; default 1 below 6 coils, 2 up to
        20, 3 up to 36, then 4. Neighbouring rings are staggered in angle.
    body_axes_mm : tuple of float, optional
        Semi-axes ``(y, x)`` of the body ellipse the array wraps; default
        ``(0.33 * fov_y, 0.47 * fov_x)``. For the cine phantom pass
        ``CineGeometry.body_semi_axes_mm`` and ``CineGeometry.fov_mm(shape)``.

    Returns
    -------
    numpy.ndarray
        complex64 [n_coils, ny, nx], ``max |S| == 1`` over all coils.
    """
    n_coils = _check_count("n_coils", n_coils)
    ny, nx = _check_pair("shape", shape, integer=True)
    fov = _check_pair("fov_mm", fov_mm)
    if n_rings is None:
        n_rings = 1 if n_coils < 6 else 2 if n_coils <= 20 else 3 if n_coils <= 36 else 4
    n_rings = _check_count("n_rings", n_rings)
    if n_rings > n_coils:
        raise InputError(f"n_rings ({n_rings}) must not exceed n_coils ({n_coils})")
    body = (0.33 * fov[0], 0.47 * fov[1]) if body_axes_mm is None else _check_pair("body_axes_mm", body_axes_mm)
    g = _as_rng(rng)

    y = (np.arange(ny) - ny // 2) * (fov[0] / ny)
    x = (np.arange(nx) - nx // 2) * (fov[1] / nx)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    maps = np.empty((n_coils, ny * nx), dtype=np.complex128)
    for c, wire in enumerate(_loop_layout(n_coils, n_rings, body, g)):
        b_x, b_y = _loop_field(xx.ravel(), yy.ravel(), wire)
        maps[c] = b_x - 1j * b_y
    maps *= np.exp(1j * g.uniform(0.0, 2 * np.pi, size=(n_coils, 1)))
    maps /= np.abs(maps).max()
    return maps.reshape(n_coils, ny, nx).astype(np.complex64)


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
    n_coils = _check_count("n_coils", n_coils)
    if not np.isfinite(correlation) or not 0.0 <= correlation < 1.0:
        raise InputError(f"correlation must be in [0, 1), got {correlation!r}")
    g = _as_rng(rng)
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
    g = _as_rng(rng)
    moved = list(shape)
    moved.append(moved.pop(coil_axis % len(shape)))
    white = (g.standard_normal(moved) + 1j * g.standard_normal(moved)) / np.sqrt(2.0)
    noise = white @ chol.T  # row vectors: n = L w
    return np.moveaxis(noise, -1, coil_axis % len(shape)).astype(np.complex64)


__all__ = ["coil_sensitivities", "noise_covariance", "correlated_noise"]
