"""SVD coil compression (Buehrer et al. 2007; Huang et al. 2008): many coils -> few virtual coils.

The compression matrix ``A [v, c]`` holds the ``v`` dominant left singular vectors
of the data matrix ``[c, samples]`` (conjugate-transposed), so virtual coil data are
``y = A x`` along the coil axis. ``A`` has orthonormal rows: compression keeps the
noise white when the input noise is white, and coil maps transform the same way.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from recon.errors import InputError


def compression_matrix(data, n_virtual: int | None = None, energy: float | None = None,
                       coil_axis: int = -3):
    """SVD coil-compression matrix.

    Parameters
    ----------
    data : complex ``[..., c, ...]`` (numpy or torch), e.g. calibration lines
        ``[c, n_acs, kx]`` (``coil_axis=0``) or k-space ``[t, c, ky, kx]``.
    n_virtual : number of virtual coils to keep, or
    energy : fraction of the signal energy (sum of squared singular values) to keep,
        in ``(0, 1]``; the smallest number of virtual coils reaching it. Exactly one
        of the two must be given.
    coil_axis : the coil axis of ``data``.

    Returns
    -------
    matrix : complex64 ``[v, c]`` with orthonormal rows (numpy, or torch for torch input).
    kept : float, fraction of the energy the ``v`` virtual coils keep.
    """
    if (n_virtual is None) == (energy is None):
        raise InputError("coil compression needs exactly one of n_virtual and energy")
    was_numpy = not torch.is_tensor(data)
    x = torch.as_tensor(np.asarray(data) if was_numpy else data)
    if x.ndim < 1:
        raise InputError("coil compression needs an array with a coil axis")
    x = x.to(torch.complex128)
    try:
        x = x.movedim(coil_axis, 0)
    except IndexError:
        raise InputError(f"coil axis {coil_axis} out of range for data of shape {tuple(x.shape)}") from None
    c = x.shape[0]
    flat = x.reshape(c, -1)
    if not torch.isfinite(torch.view_as_real(flat)).all():
        raise InputError("coil compression: data contain NaN or infinite values")
    cov = flat @ flat.mH
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    total = float(evals.sum())
    if total <= 0:
        raise InputError("coil compression: data are all zero")
    frac = torch.cumsum(evals, 0) / total
    if n_virtual is not None:
        if isinstance(n_virtual, bool) or not isinstance(n_virtual, (int, np.integer)) or not 1 <= n_virtual <= c:
            raise InputError(f"n_virtual must be an integer in [1, {c}] (number of coils), got {n_virtual!r}")
        v = int(n_virtual)
    else:
        if not isinstance(energy, (int, float)) or not 0 < energy <= 1:
            raise InputError(f"energy fraction must lie in (0, 1], got {energy!r}")
        v = min(c, int((frac < energy - 1e-12).sum()) + 1)
    matrix = evecs[:, :v].mH.to(torch.complex64).contiguous()
    kept = float(frac[v - 1])
    return (matrix.numpy() if was_numpy else matrix), kept


def compress(x, matrix, coil_axis: int = -3):
    """Apply a compression matrix ``[v, c]`` along the coil axis of ``x [..., c, ...]``.

    Returns the same kind as ``x`` (numpy or torch), complex64, coil axis of size ``v``.
    """
    was_numpy = not torch.is_tensor(x)
    t = torch.as_tensor(np.asarray(x) if was_numpy else x).to(torch.complex64)
    m = torch.as_tensor(np.asarray(matrix) if not torch.is_tensor(matrix) else matrix).to(torch.complex64)
    if m.ndim != 2:
        raise InputError(f"compression matrix must be [virtual, coils], got shape {tuple(m.shape)}")
    try:
        moved = t.movedim(coil_axis, -1)
    except IndexError:
        raise InputError(f"coil axis {coil_axis} out of range for shape {tuple(t.shape)}") from None
    if moved.shape[-1] != m.shape[1]:
        raise InputError(f"data have {moved.shape[-1]} coils, compression matrix expects {m.shape[1]}")
    out = (moved @ m.T).movedim(-1, coil_axis).contiguous()
    return out.numpy() if was_numpy else out


def compress_slice(s, n_virtual: int | None = None, energy: float | None = None):
    """Compress a :class:`recon.slicedata.SliceData` (k-space and ACS) to virtual coils.

    The matrix is computed from the time-averaged calibration lines.

    Returns
    -------
    (new SliceData with ``v`` coils, matrix ``[v, c]``, kept energy fraction).
    """
    from recon.coils.estimate import average_acs

    acs = average_acs(s.acs, s.acs_mask)
    matrix, kept = compression_matrix(acs, n_virtual=n_virtual, energy=energy, coil_axis=0)
    new = dataclasses.replace(s, kspace=compress(s.kspace, matrix, coil_axis=1),
                              acs=compress(s.acs, matrix, coil_axis=1))
    return new, matrix, kept
