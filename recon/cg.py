"""The conjugate-gradient solver of the project's normal equations (CG-SENSE, the
unrolled networks' CG data consistency, the coil-map merge): one system per batch sample.
"""

from __future__ import annotations

from typing import Callable

import torch


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample complex inner product ``<a, b> = sum conj(a) b`` over all but the batch axis."""
    return (a.conj() * b).flatten(1).sum(dim=1)


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    n_iter: int = 20,
    tol: float = 1e-6,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """CG for ``normal(x) = rhs``, one independent system per index of the first axis.

    ``normal`` must be Hermitian positive (semi-)definite over all axes but the first;
    inner products and step sizes are per sample ``rhs[i]``. Stops after ``n_iter``
    iterations or when every sample's relative residual is below ``tol``; a sample whose
    relative residual is at the precision's floor (4 eps), or whose search direction meets
    no curvature (``p^H A p <= 64 eps |p|^2``: rounding error in the null space of a singular
    ``normal``, e.g. SENSE without regularisation), stops moving while others go on: else its
    next step divides rounding error by rounding error and blows up.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rr = _dot(r, r).real
    rr0 = _dot(rhs, rhs).real.clamp_min(torch.finfo(rr.dtype).tiny)
    shape = (-1,) + (1,) * (x.ndim - 1)
    floor = (4 * torch.finfo(rr.dtype).eps) ** 2
    flat = 64 * torch.finfo(rr.dtype).eps
    for it in range(n_iter):
        if bool((rr / rr0 <= tol**2).all()):
            break
        ap = normal(p)
        pap = _dot(p, ap).real
        alpha = rr / pap.clamp_min(torch.finfo(rr.dtype).tiny)
        # no curvature along p (rounding error in a null space of a singular normal): no step
        alpha = torch.where((rr / rr0 <= floor) | (pap <= flat * _dot(p, p).real), torch.zeros_like(alpha), alpha)
        x = x + alpha.reshape(shape) * p
        r = r - alpha.reshape(shape) * ap
        rr_new = _dot(r, r).real
        beta = rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny)
        p = r + beta.reshape(shape) * p
        rr = rr_new
        if callback is not None:
            callback(it, x)
    return x
