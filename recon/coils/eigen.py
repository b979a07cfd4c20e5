"""Point-wise dominant eigenvectors of small Hermitian matrices on an image grid.

Shared by the coil-map methods: ESPIRiT (:mod:`recon.coils.espirit`, the per-pixel
Gram matrices of the calibration kernels) and Walsh (:mod:`recon.coils.walsh`, the
smoothed coil covariances). ``coarse > 1`` solves on every ``coarse``-th pixel by
repeated matrix squaring (elementwise work, no per-pixel LAPACK), interpolates the
phase-normalised vectors and refines them with power iterations on every pixel.
Failures of the solver are :class:`EigenSolverError`, never a crash.

Shapes: planar matrices ``[c, c, y, x]``, vectors ``[c, y, x]``, values ``[y, x]``.
"""

from __future__ import annotations

import torch

from recon.errors import InputError


class EigenSolverError(InputError):
    """The eigen-solver failed on calibration data (ill-conditioned, overflowing or degenerate)."""


def eigh_checked(matrix: torch.Tensor, what: str, method: str = "ESPIRiT") -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` whose failures (and non-finite results) are :class:`EigenSolverError`."""
    try:
        values, vectors = torch.linalg.eigh(matrix)
    except (torch.linalg.LinAlgError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise EigenSolverError(f"{method} eigen-solver failed on the {what} ({type(exc).__name__}: {reason})") \
            from None
    real = torch.view_as_real(vectors) if vectors.is_complex() else vectors
    if not (torch.isfinite(values).all() and torch.isfinite(real).all()):
        raise EigenSolverError(f"{method} eigen-solver gave NaN/Inf on the {what} (calibration values overflow?)")
    return values, vectors


def _phase_normalise(v: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Rotate planar vectors ``v [c, ...]`` so that ``ref^H v`` is real and positive."""
    p = torch.tensordot(ref.conj(), v, dims=([0], [0]))
    mag = p.abs()
    unit = torch.where(mag > 0, p.conj() / mag.clamp_min(1e-30), torch.ones_like(p))
    return v * unit


def _matvec(gram: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Point-wise ``G v`` for planar ``gram [c, c, ...]`` and ``v [c, ...]``."""
    out = gram[:, 0] * v[0]
    for j in range(1, gram.shape[1]):
        out.addcmul_(gram[:, j], v[j])
    return out


def _normalise(v: torch.Tensor) -> torch.Tensor:
    norm = (v.real.square() + v.imag.square()).sum(0).sqrt()
    return v / norm.clamp_min(1e-30)


def coarse_positions(n: int, step: int) -> torch.Tensor:
    """Pixel indices ``0, step, 2 step, ...`` plus the last pixel ``n - 1`` (int64)."""
    pos = torch.arange(0, n, max(1, step))
    return pos if pos[-1] == n - 1 else torch.cat([pos, torch.tensor([n - 1])])


def linear_interpolation_matrix(pos: torch.Tensor, n: int) -> torch.Tensor:
    """``[n, len(pos)]`` matrix interpolating samples at ascending ``pos`` linearly to ``0..n-1``."""
    if len(pos) == 1:
        return torch.ones(n, 1)
    q = torch.arange(n, dtype=torch.float64)
    p = pos.to(torch.float64)
    hi = torch.searchsorted(p, q, right=False).clamp(1, len(p) - 1)
    lo = hi - 1
    w = ((q - p[lo]) / (p[hi] - p[lo])).clamp(0, 1)
    out = torch.zeros(n, len(p), dtype=torch.float64)
    out[torch.arange(n), lo] = 1 - w
    out[torch.arange(n), hi] += w
    return out.float()


def _top_eigenvector_by_squaring(gram: torch.Tensor, squarings: int = 6) -> torch.Tensor:
    """Top eigenvector of planar Hermitian PSD matrices ``[c, c, ...]`` via ``G^(2^k)``.

    ``squarings`` repeated squarings (trace-normalised) equal ``2^squarings`` power
    iterations; the column of the result with the largest diagonal entry is the
    eigenvector. Elementwise work only: no per-pixel LAPACK calls, which are slow
    in bulk and stall badly when the CPU is shared.

    Returns complex64 ``[c, ...]`` of unit norm.
    """
    c = gram.shape[0]
    m = gram
    for _ in range(squarings):
        trace = torch.diagonal(m, dim1=0, dim2=1).real.sum(-1)
        m = m / trace.clamp_min(1e-30)
        out = m[:, 0:1] * m[0:1, :]
        for k in range(1, c):
            out.addcmul_(m[:, k:k + 1], m[k:k + 1, :])
        m = out
    diag = torch.diagonal(m, dim1=0, dim2=1).real  # [..., c]
    pick = diag.argmax(-1)  # [...]
    cols = torch.gather(m, 1, pick.unsqueeze(0).unsqueeze(0).expand(c, 1, *pick.shape)).squeeze(1)
    return _normalise(cols)


def dominant_eigenvectors(gram: torch.Tensor, ref: torch.Tensor, coarse: int = 1, refine: int = 3,
                          method: str = "ESPIRiT"):
    """Top eigenvector and eigenvalue of Hermitian ``c x c`` matrices on a 2D grid.

    Parameters
    ----------
    gram : complex64 ``[c, c, y, x]`` (planar), Hermitian positive semi-definite per pixel.
    ref : complex ``[c]``; each vector is rotated so that ``ref^H v > 0``.
    coarse : 1: exact ``eigh`` at every pixel. ``> 1``: on every ``coarse``-th pixel
        (last row/column included) the top eigenvector from 64 power steps (six
        matrix squarings), bilinear interpolation of the phase-normalised vectors,
        then ``refine`` power iterations with every pixel's own matrix and a
        Rayleigh quotient for the eigenvalue.
    refine : power iterations after the interpolation (``coarse > 1`` only).
    method : the coil-map method, named in solver errors.

    Returns
    -------
    vectors : complex64 ``[c, y, x]`` (unit norm); values : float32 ``[y, x]``.
    """
    c, _, ny, nx = gram.shape
    ref = ref.to(gram.dtype)
    if coarse <= 1:
        vals, vecs = eigh_checked(gram.permute(2, 3, 0, 1), "per-pixel coil matrices", method)
        return _phase_normalise(vecs[..., -1].permute(2, 0, 1), ref), vals[..., -1]
    py, px = coarse_positions(ny, coarse), coarse_positions(nx, coarse)
    small = gram[:, :, py][:, :, :, px]
    v = _phase_normalise(_top_eigenvector_by_squaring(small), ref)  # [c, sy, sx]
    wy = linear_interpolation_matrix(py, ny).to(v.dtype)
    wx = linear_interpolation_matrix(px, nx).to(v.dtype)
    v = wy @ v @ wx.T  # [c, y, x]
    for _ in range(refine):
        v = _normalise(_matvec(gram, v))
    v = _normalise(v)
    gv = _matvec(gram, v)
    vals = (v.real * gv.real + v.imag * gv.imag).sum(0)
    return _phase_normalise(v, ref), vals


def principal_coil_vector(calib: torch.Tensor, method: str = "ESPIRiT") -> torch.Tensor:
    """First principal component ``[c]`` of the calibration samples (virtual body coil)."""
    c = calib.shape[0]
    x = calib.reshape(c, -1).to(torch.complex128)
    _, vecs = eigh_checked(x @ x.mH, "coil covariance", method)
    u = vecs[:, -1]
    return (u * (u.conj() @ torch.ones(c, dtype=u.dtype)).sgn().conj()).to(torch.complex64)
