"""PSNR, SSIM and NMSE per frame, as CMRxRecon computes them, and the differentiable SSIM.

Definition followed (CmrxRecon/CMRxRecon, ``Evaluation/Evaluation.py``, ``calmetric``):
every 2-D frame is scored on its own; the reference frame is divided by its own
maximum and the reconstructed frame by *its own* maximum (``gt / gt.max()``,
``pred / pred.max()``), then

- PSNR = ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=gt.max())``,
  and since ``gt`` is max-normalised, ``data_range = 1``: ``10 log10(1 / MSE)``;
- SSIM = ``skimage.metrics.structural_similarity(gt, pred, data_range=1)`` with the
  skimage defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance
  (N / (N - 1)), mean of the SSIM map with the 3-pixel filter-radius border excluded;
- NMSE = ``||gt - pred||^2 / ||gt||^2`` on the normalised frames.

The frames (magnitude, optional CMRxRecon centre crop, max normalisation, float64) are
those of :func:`recon.metrics.frames.prepare`. :func:`psnr`, :func:`ssim` and
:func:`nmse` take ``ref`` and ``rec`` as complex or real arrays ``[t, y, x]`` (a 2-D
``[y, x]`` is taken as one frame), numpy arrays or torch tensors, and return per-frame
values as a numpy float64 array ``[t]``. Bad input raises :class:`recon.errors.InputError`.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from recon.errors import InputError
from recon.metrics.frames import ArrayLike, Crop, prepare

SSIM_K1 = 0.01
SSIM_K2 = 0.03

__all__ = ["nmse", "psnr", "ssim", "ssim_map", "ssim_torch"]


# ---------------------------------------------------------------------------
# SSIM in torch (differentiable)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: Union[float, torch.Tensor],
             win_size: int) -> torch.Tensor:
    """SSIM map on the valid region, skimage's formula.

    x, y: [b, 1, H, W]; returns [b, H - win_size + 1, W - win_size + 1]: exactly the
    part of skimage's full map that it averages (the filter-radius border excluded),
    where a uniform filter equals a valid-mode box filter (``avg_pool2d`` stride 1).
    """
    if win_size < 3 or win_size % 2 == 0:
        raise InputError(f"SSIM: win_size must be an odd integer >= 3, got {win_size}")
    if x.shape[-2] < win_size or x.shape[-1] < win_size:
        raise InputError(
            f"SSIM: image size {tuple(x.shape[-2:])} is smaller than the {win_size}x{win_size} window")
    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1.0)
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [b, 5, H, W]
    filt = F.avg_pool2d(stacked, kernel_size=win_size, stride=1)
    ux, uy, uxx, uyy, uxy = filt.unbind(dim=1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    r = torch.as_tensor(data_range, dtype=x.dtype, device=x.device)
    if r.ndim == 1:
        r = r.view(-1, 1, 1)
    c1 = (SSIM_K1 * r) ** 2
    c2 = (SSIM_K2 * r) ** 2
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = vx + vy + c2
    return (a1 * a2) / (b1 * b2)


def _as_b1hw(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4 and x.shape[1] == 1:
        return x
    raise InputError(f"{name}: expected a tensor [b, 1, y, x] or [b, y, x], got shape {tuple(x.shape)}")


def ssim_torch(x: torch.Tensor, y: torch.Tensor, data_range: Union[float, torch.Tensor],
               win_size: int = 7) -> torch.Tensor:
    """Differentiable mean SSIM per image, equal to skimage's ``structural_similarity``.

    x, y: real float tensors [b, 1, y, x] or [b, y, x] (any device, grads flow through
    both). data_range: a number or a tensor [b] (one range per image). Uniform
    ``win_size`` window, K1 = 0.01, K2 = 0.03, sample covariance, map averaged over
    the valid region (border of (win_size - 1) // 2 excluded), as skimage.
    Returns [b]. For a training loss use ``1 - ssim_torch(...).mean()``.
    """
    if x.is_complex() or y.is_complex() or not x.is_floating_point() or not y.is_floating_point():
        raise InputError("ssim_torch: x and y must be real floating-point tensors")
    x4, y4 = _as_b1hw(x, "ssim_torch x"), _as_b1hw(y, "ssim_torch y")
    if x4.shape != y4.shape:
        raise InputError(f"ssim_torch: shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    return ssim_map(x4, y4, data_range, win_size).mean(dim=(-2, -1))


# ---------------------------------------------------------------------------
# per-frame metrics


def psnr(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame PSNR in dB, [t] (CMRxRecon: max-normalised frames, data_range = 1).

    ``10 * log10(1 / mean((ref_n - rec_n)^2))``; identical frames give ``inf``.
    """
    r, p = prepare(ref, rec, crop)
    mse = ((r - p) ** 2).mean(dim=(-2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse.numpy())


def ssim(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame SSIM, [t] (CMRxRecon: skimage defaults on max-normalised frames, data_range = 1)."""
    r, p = prepare(ref, rec, crop)
    return ssim_torch(r, p, data_range=1.0).numpy()


def nmse(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame NMSE ``||ref_n - rec_n||^2 / ||ref_n||^2`` on max-normalised frames, [t]."""
    r, p = prepare(ref, rec, crop)
    return (((r - p) ** 2).sum(dim=(-2, -1)) / (r ** 2).sum(dim=(-2, -1))).numpy()
