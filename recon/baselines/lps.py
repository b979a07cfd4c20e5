"""Low-rank plus sparse (L+S) reconstruction of dynamic MRI.

Otazo, Candes, Sodickson, "Low-rank plus sparse matrix decomposition for
accelerated dynamic MRI with separation of background and dynamic components",
MRM 73:1125 (2015), solved by iterative soft thresholding as in the authors'
published MATLAB ``lps_ist`` (L+S demo code, 2013). With ``M`` the images, ``C(.)``
the Casorati matrix ``[y*x, t]``, ``T`` the orthonormal temporal FFT and ``E`` the
multi-coil SENSE operator (:class:`recon.sense.SenseOperator`)::

    M = E^H d;  L_pre = M;  S = 0
    repeat
        M0 = M
        L = SVT(C(M - S), lambda_L * sigma_1(M - S))      # singular-value soft threshold
        S = T^H soft(T (M - L_pre), lambda_S * scale)     # note: L of the previous pass
        M = L + S - E^H (E (L + S) - d)                   # gradient (data-consistency) step
        L_pre = L
    until n_iter passes or ||M - M0|| < tol ||M0||
    return L + S

Threshold scaling. ``lambda_L`` is relative, as in ``lps_ist`` (times the largest
singular value of the current ``M - S``). In ``lps_ist`` ``lambda_S`` is an absolute
threshold, so its published value (0.0025 for cine) holds only for data of the
scale of the demo data (images of maximum magnitude about 1; Lin & Fessler's
converged cine solution ``Xinf`` has max 1.45). We make it scale-free the way the
authors' own C++ port does (Poulson, Otazo, Candes, RT-LPS-MRI, ``lambdaSRelMaxM``):
``scale = max |E^H d|``, the largest magnitude of the zero-filled SENSE image. This
is the same as normalising the data so that ``max |E^H d| = 1`` and running
``lps_ist`` unchanged, and makes the result equivariant to data scaling. Our ``E``
and ``T`` are orthonormal like ``Emat_xyt`` and ``TempFFT`` in the MATLAB code, so the
thresholds mean the same thing there and here.

With ``lambda_L = lambda_S = 0`` the iteration is gradient descent (Landweber) on
``||E x - d||^2 / 2`` with step 2 for ``x = L + S``: ``x_{k+1} = x_k + 2 E^H (d - E x_k)``
from ``x_1 = E^H d`` (tested).
"""

from __future__ import annotations

from typing import Callable

import torch

from recon.errors import InputError
from recon.fft import fftc, ifftc
from recon.problem import SliceProblem
from recon.sense import SenseOperator

#: Defaults of Otazo's cine demo (stationary background) and design.md §4.
DEFAULT_LAMBDA_L = 0.01
DEFAULT_LAMBDA_S = 0.0025
DEFAULT_ITERATIONS = 50
DEFAULT_TOL = 0.0025


def soft_threshold(x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Complex soft thresholding ``max(|x| - threshold, 0) * x / |x|`` (0 where ``x = 0``)."""
    mag = x.abs()
    scale = torch.clamp(mag - threshold, min=0) / torch.where(mag > 0, mag, torch.ones_like(mag))
    return x * scale


def singular_value_threshold(casorati: torch.Tensor, lambda_l: float) -> torch.Tensor:
    """Soft-threshold the singular values of ``casorati [n, t]`` (``n >= t``) at ``lambda_l * sigma_1``.

    Returns ``U diag(max(s - lambda_l s_1, 0)) V^H``, the same shape as the input.
    Computed from the small ``[t, t]`` Gram matrix ``C^H C = V diag(s^2) V^H``
    (eigendecomposition in double precision) as ``C V diag(max(s - tau, 0) / s) V^H``,
    which equals the SVD form and is ~30x faster than ``torch.linalg.svd`` for a tall
    ``[y*x, t]`` matrix. Singular values below ``tau`` are dropped, so the limited
    accuracy of the smallest ones (about ``1e-4 s_1`` in single precision) does not
    matter for ``lambda_l >= 1e-3``; ``lambda_l = 0`` returns the input unchanged.
    """
    if lambda_l == 0:
        return casorati
    gram = casorati.mH @ casorati
    gram = (0.5 * (gram + gram.mH)).to(torch.complex128)
    w, v = torch.linalg.eigh(gram)
    s = w.clamp_min(0).sqrt()
    tau = lambda_l * s.max()
    gain = torch.where(s > tau, (s - tau) / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
    projector = (v * gain.to(v.dtype)) @ v.mH
    return casorati @ projector.to(casorati.dtype)


def lps(
    p: SliceProblem,
    lambda_l: float = DEFAULT_LAMBDA_L,
    lambda_s: float = DEFAULT_LAMBDA_S,
    n_iter: int = DEFAULT_ITERATIONS,
    tol: float = DEFAULT_TOL,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """L+S reconstruction of one slice (see the module docstring for the algorithm).

    Parameters
    ----------
    p : slice problem: k-space ``[t, c, y, x]``, mask ``[t, y]``, maps ``[c, y, x]``
        (unit sum-of-squares, so ``||E|| <= 1`` and the unit gradient step is stable).
    lambda_l : singular-value threshold relative to the largest singular value (>= 0).
    lambda_s : threshold of the temporal-FFT coefficients relative to
        ``max |E^H d|`` (>= 0).
    n_iter : maximum number of iterations (>= 1).
    tol : stop when ``||M - M0|| < tol ||M0||`` (``lps_ist``'s rule); 0 runs all
        ``n_iter`` iterations.
    progress : called as ``progress(iteration, n_iter)`` (1-based) after each iteration.

    Returns
    -------
    complex64 tensor ``[t, y, x]``: ``L + S``.
    """
    if lambda_l < 0 or lambda_s < 0:
        raise InputError(f"lambda_l and lambda_s must be >= 0, got {lambda_l}, {lambda_s}")
    if int(n_iter) < 1:
        raise InputError(f"n_iter must be >= 1, got {n_iter}")
    if tol < 0:
        raise InputError(f"tol must be >= 0, got {tol}")
    n_iter = int(n_iter)
    k, mask, maps = p.batched()
    d = k.to(torch.complex64)
    op = SenseOperator(maps.to(torch.complex64), mask)
    m = op.adjoint(d)[0]  # [t, y, x]
    nt, ny, nx = m.shape
    threshold_s = float(lambda_s) * float(m.abs().max())

    def casorati(x: torch.Tensor) -> torch.Tensor:  # [t, y, x] -> [y*x, t]
        return x.reshape(nt, ny * nx).T

    l_pre = m
    s = torch.zeros_like(m)
    for it in range(1, n_iter + 1):
        m0 = m
        l = singular_value_threshold(casorati(m - s), lambda_l).T.reshape(nt, ny, nx)
        s = ifftc(soft_threshold(fftc(m - l_pre, dims=(0,)), threshold_s), dims=(0,))
        x = l + s
        m = x - op.adjoint(op.forward(x[None]) - d)[0]
        l_pre = l
        if progress is not None:
            progress(it, n_iter)
        if torch.linalg.vector_norm(m - m0) < tol * torch.linalg.vector_norm(m0):
            break
    return (l + s).to(torch.complex64)
