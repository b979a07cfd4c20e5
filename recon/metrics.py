"""Image-quality metrics for cine reconstructions, computed as CMRxRecon computes them.

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

Images are magnitudes of the complex reconstruction. Before scoring, CMRxRecon crops
the centre of each image (``run4Ranking.m``: ``crop(abs(img), [round(sx/3), round(sy/2)])``
with ``sx`` the readout and ``sy`` the phase-encode size, Lustig's ``crop.m`` index rule);
:func:`cmrxrecon_crop_size` gives that size for our ``[t, y, x]`` layout (y = phase
encode, x = readout) and ``crop=`` applies it. Cropping happens before normalisation,
as there. The challenge also keeps only the first 3 frames and central 2 slices; that
selection is the caller's job. One difference: CMRxRecon stores single precision and
skimage then computes in float32; we compute in float64 (differences ~1e-6).

All metric functions take ``ref`` and ``rec`` as complex or real arrays ``[t, y, x]``
(a 2-D ``[y, x]`` is taken as one frame), numpy arrays or torch tensors, and return
per-frame values as a numpy float64 array ``[t]``. Bad input raises
:class:`recon.errors.InputError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import threading
import types
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from recon.errors import InputError
from recon.kspace import center_crop as _kspace_center_crop

ArrayLike = Union[np.ndarray, torch.Tensor]
Crop = Optional[Sequence[int]]

SSIM_K1 = 0.01
SSIM_K2 = 0.03
HAARPSI_MIN_SIZE = 16  # piq HaarPSI with 3 scales needs at least 2**(3+1) pixels a side
DEFAULT_DYNAMIC_FRACTION = 0.1

__all__ = [
    "center_crop",
    "cmrxrecon_crop_size",
    "dynamic_mask",
    "haarpsi",
    "masked_psnr",
    "masked_ssim",
    "nmse",
    "psnr",
    "region_metrics",
    "region_split_metrics",
    "ssim",
    "ssim_torch",
    "summarise",
]


# ---------------------------------------------------------------------------
# input handling


def _magnitude(x: ArrayLike, name: str) -> torch.Tensor:
    """Magnitude of ``x`` as a float64 CPU tensor [t, y, x] (2-D input -> t = 1)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            t = torch.from_numpy(np.asarray(x))
        except TypeError as exc:
            raise InputError(f"{name}: cannot be read as a numeric array ({exc})") from exc
    if t.dtype == torch.bool:
        raise InputError(f"{name}: dtype bool is not a numeric image type")
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise InputError(f"{name}: expected an array [t, y, x] (or [y, x]), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise InputError(f"{name}: empty array of shape {tuple(t.shape)}")
    t = t.to(torch.complex128).abs() if t.is_complex() else t.to(torch.float64).abs()
    if not torch.isfinite(t).all():
        raise InputError(f"{name}: contains non-finite values (NaN or inf)")
    return t


def _round_half_up(v: float) -> int:
    """MATLAB ``round`` for positive values (Python's ``round`` rounds half to even)."""
    return int(math.floor(v + 0.5))


def cmrxrecon_crop_size(shape: Sequence[int]) -> tuple[int, int]:
    """CMRxRecon's ranking crop (h, w) for images whose last two axes are [y, x].

    ``run4Ranking.m`` keeps ``round(sx/3)`` readout samples and ``round(sy/2)``
    phase-encode lines (MATLAB order (sx = readout, sy = phase encode)); in our
    [..., y, x] layout (y = phase encode, x = readout) that is
    ``(round(ny / 2), round(nx / 3))``.
    """
    if len(shape) < 2:
        raise InputError(f"crop size: need a shape with at least 2 axes, got {tuple(shape)}")
    ny, nx = int(shape[-2]), int(shape[-1])
    return max(1, _round_half_up(ny / 2)), max(1, _round_half_up(nx / 3))


def center_crop(x: torch.Tensor, crop: Sequence[int]) -> torch.Tensor:
    """Centre crop of the last two axes of ``x`` [..., y, x] to ``crop`` = (h, w).

    Index rule of Lustig's ``crop.m`` used by CMRxRecon (the project's one crop,
    :func:`recon.kspace.center_crop`): the kept range starts at ``n // 2 - h // 2``.
    """
    if len(crop) != 2:
        raise InputError(f"crop: expected (h, w), got {tuple(crop)}")
    h, w = int(crop[0]), int(crop[1])
    ny, nx = x.shape[-2], x.shape[-1]
    if h < 1 or w < 1 or h > ny or w > nx:
        raise InputError(f"crop: size ({h}, {w}) does not fit inside the image size ({ny}, {nx})")
    return _kspace_center_crop(x, (h, w))


def _normalise_frames(x: torch.Tensor, name: str, is_reference: bool) -> torch.Tensor:
    """Divide each frame of ``x`` [t, y, x] by its own maximum.

    An all-zero reference frame is an error (the metrics are undefined); an all-zero
    reconstructed frame is left at zero (CMRxRecon would divide by zero and score NaN).
    """
    peak = x.amax(dim=(-2, -1), keepdim=True)
    zero = peak.flatten() <= 0
    if bool(zero.any()):
        frames = torch.nonzero(zero).flatten().tolist()
        if is_reference:
            raise InputError(f"{name}: frame(s) {frames} are all zero; metrics need a non-zero reference frame")
        peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return x / peak


def _prepare(ref: ArrayLike, rec: ArrayLike, crop: Crop) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude, optional centre crop and per-frame max normalisation; both [t, h, w]."""
    r = _magnitude(ref, "reference")
    p = _magnitude(rec, "reconstruction")
    if r.shape != p.shape:
        raise InputError(
            f"shape mismatch: reference {tuple(r.shape)} vs reconstruction {tuple(p.shape)}")
    if crop is not None:
        r = center_crop(r, crop)
        p = center_crop(p, crop)
    return _normalise_frames(r, "reference", True), _normalise_frames(p, "reconstruction", False)


def _mask_tensor(mask: ArrayLike, shape: Sequence[int]) -> torch.Tensor:
    """Validate a region mask against the image size [h, w]; return a bool tensor."""
    m = torch.as_tensor(np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask))
    if tuple(m.shape) != tuple(shape):
        raise InputError(f"mask: shape {tuple(m.shape)} does not match the (cropped) image size {tuple(shape)}")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise InputError("mask: expected a boolean (or 0/1) array")
        m = m != 0
    if not bool(m.any()):
        raise InputError("mask: the region is empty (no pixel selected)")
    return m


# ---------------------------------------------------------------------------
# SSIM in torch (differentiable)


def _ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: Union[float, torch.Tensor],
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
    return _ssim_map(x4, y4, data_range, win_size).mean(dim=(-2, -1))


# ---------------------------------------------------------------------------
# per-frame metrics


def psnr(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame PSNR in dB, [t] (CMRxRecon: max-normalised frames, data_range = 1).

    ``10 * log10(1 / mean((ref_n - rec_n)^2))``; identical frames give ``inf``.
    """
    r, p = _prepare(ref, rec, crop)
    mse = ((r - p) ** 2).mean(dim=(-2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse.numpy())


def ssim(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame SSIM, [t] (CMRxRecon: skimage defaults on max-normalised frames, data_range = 1)."""
    r, p = _prepare(ref, rec, crop)
    return ssim_torch(r, p, data_range=1.0).numpy()


def nmse(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame NMSE ``||ref_n - rec_n||^2 / ||ref_n||^2`` on max-normalised frames, [t]."""
    r, p = _prepare(ref, rec, crop)
    return (((r - p) ** 2).sum(dim=(-2, -1)) / (r ** 2).sum(dim=(-2, -1))).numpy()


# ---------------------------------------------------------------------------
# HaarPSI via piq

_PIQ_LOCK = threading.Lock()
_PIQ_HAARPSI: Optional[Callable[..., torch.Tensor]] = None


def _load_piq_haarpsi() -> Callable[..., torch.Tensor]:
    """Return ``piq.haarpsi``; raise RuntimeError if the ``piq`` package is missing.

    ``import piq`` imports torchvision (for its VGG-based metrics), which is absent, or a
    CUDA build that fails to load, next to a CPU-only torch. HaarPSI itself needs only
    ``piq.haarpsi``, ``piq.utils`` and ``piq.functional``, so those submodules are loaded
    under a temporary stand-in for the ``piq`` package, which is then taken out of
    ``sys.modules`` again (a later ``import piq`` starts clean).
    """
    global _PIQ_HAARPSI
    if _PIQ_HAARPSI is not None:
        return _PIQ_HAARPSI
    with _PIQ_LOCK:
        if _PIQ_HAARPSI is not None:
            return _PIQ_HAARPSI
        loaded = sys.modules.get("piq")
        if loaded is not None and callable(getattr(loaded, "haarpsi", None)):
            _PIQ_HAARPSI = loaded.haarpsi
            return _PIQ_HAARPSI
        spec = importlib.util.find_spec("piq")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(
                "HaarPSI needs the optional 'piq' package, which is not installed: "
                "run `pip install --no-deps piq` (its HaarPSI needs no torchvision, and a plain "
                "install would pull a CUDA torchvision)")
        before = set(sys.modules)
        stand_in = types.ModuleType("piq")
        stand_in.__path__ = list(spec.submodule_search_locations)  # type: ignore[attr-defined]
        stand_in.__spec__ = spec
        sys.modules["piq"] = stand_in
        try:
            fn = importlib.import_module("piq.haarpsi").haarpsi
        except Exception as exc:  # noqa: BLE001 - reported with its cause
            raise RuntimeError(f"the 'piq' package is installed but its HaarPSI cannot be loaded: {exc}") from exc
        finally:
            for key in set(sys.modules) - before:
                if key == "piq" or key.startswith("piq."):
                    del sys.modules[key]
        _PIQ_HAARPSI = fn
        return fn


def haarpsi(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame HaarPSI, [t], by ``piq.haarpsi`` on max-normalised magnitude frames.

    piq defaults (3 scales, 2x subsampling, c = 30, alpha = 4.2), data_range = 1, as the
    paper. Frames must be at least 16x16. Raises RuntimeError if piq is not installed.
    """
    fn = _load_piq_haarpsi()
    r, p = _prepare(ref, rec, crop)
    if r.shape[-2] < HAARPSI_MIN_SIZE or r.shape[-1] < HAARPSI_MIN_SIZE:
        raise InputError(f"HaarPSI: image size {tuple(r.shape[-2:])} is smaller than "
                         f"{HAARPSI_MIN_SIZE}x{HAARPSI_MIN_SIZE}")
    return fn(p.unsqueeze(1), r.unsqueeze(1), data_range=1.0, reduction="none").numpy()


# ---------------------------------------------------------------------------
# dynamic / static regions


def dynamic_mask(ref: ArrayLike, fraction: float = DEFAULT_DYNAMIC_FRACTION,
                 threshold: Optional[float] = None, crop: Crop = None) -> np.ndarray:
    """Dynamic-region mask, bool [h, w], from the temporal std of the reference.

    The reference magnitude is max-normalised frame by frame (as for the metrics) and
    its temporal standard deviation (population, ddof = 0) taken per pixel. A pixel is
    dynamic where ``std > threshold`` if a fixed ``threshold`` is given, else where
    ``std > fraction * max(std)``. The default fraction 0.1 selects the beating heart
    and moving boundaries on real cine (Sunnybrook SAX: ~4 % of the FOV); static tissue
    with noise stays below it. The static region is ``~mask``.
    """
    r = _magnitude(ref, "reference")
    if r.shape[0] < 2:
        raise InputError(f"dynamic_mask: need at least 2 frames, got {r.shape[0]}")
    if crop is not None:
        r = center_crop(r, crop)
    r = _normalise_frames(r, "reference", True)
    std = r.std(dim=0, correction=0)
    if threshold is not None:
        if not math.isfinite(threshold) or threshold < 0:
            raise InputError(f"dynamic_mask: threshold must be a finite number >= 0, got {threshold}")
        return (std > threshold).numpy()
    if not (0.0 < fraction < 1.0):
        raise InputError(f"dynamic_mask: fraction must lie in (0, 1), got {fraction}")
    peak = float(std.max())
    if peak == 0.0:
        return np.zeros(tuple(std.shape), dtype=bool)
    return (std > fraction * peak).numpy()


def masked_psnr(ref: ArrayLike, rec: ArrayLike, mask: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame PSNR inside a region, [t]: MSE over the pixels where ``mask`` [h, w] is true.

    Frames are normalised by their whole-frame maximum (as for :func:`psnr`), data_range = 1.
    """
    r, p = _prepare(ref, rec, crop)
    m = _mask_tensor(mask, r.shape[-2:])
    mse = ((r - p) ** 2)[:, m].mean(dim=-1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse.numpy())


def masked_ssim(ref: ArrayLike, rec: ArrayLike, mask: ArrayLike, crop: Crop = None,
                win_size: int = 7) -> np.ndarray:
    """Per-frame mean of the SSIM map over the pixels where ``mask`` [h, w] is true, [t].

    The map is the one :func:`ssim` averages (valid region; the (win_size - 1) // 2
    border is excluded, so border pixels of the mask do not count). With an all-true
    mask this equals :func:`ssim`.
    """
    r, p = _prepare(ref, rec, crop)
    m = _mask_tensor(mask, r.shape[-2:])
    pad = (win_size - 1) // 2
    smap = _ssim_map(r.unsqueeze(1), p.unsqueeze(1), 1.0, win_size)  # [t, h - 2 pad, w - 2 pad]
    m_valid = m[pad:m.shape[0] - pad, pad:m.shape[1] - pad]
    if not bool(m_valid.any()):
        raise InputError(f"mask: no selected pixel lies inside the SSIM valid region "
                         f"(the {pad}-pixel border is excluded)")
    return smap[:, m_valid].mean(dim=-1).numpy()


def region_metrics(ref: ArrayLike, rec: ArrayLike, mask: ArrayLike,
                   crop: Crop = None) -> dict[str, np.ndarray]:
    """PSNR and SSIM inside one region: ``{"psnr": [t], "ssim": [t]}`` (see masked_psnr / masked_ssim)."""
    return {"psnr": masked_psnr(ref, rec, mask, crop), "ssim": masked_ssim(ref, rec, mask, crop)}


def region_split_metrics(ref: ArrayLike, rec: ArrayLike,
                         fraction: float = DEFAULT_DYNAMIC_FRACTION,
                         threshold: Optional[float] = None, crop: Crop = None) -> dict[str, float]:
    """Frame-mean PSNR and SSIM in the dynamic and the static region of the reference.

    The split is :func:`dynamic_mask` (same ``fraction`` / ``threshold`` rule). Returns
    ``dynamic_psnr``, ``static_psnr``, ``dynamic_ssim``, ``static_ssim`` and
    ``dynamic_fraction`` (share of pixels that are dynamic). An empty region (e.g. a
    series without motion) is an InputError.
    """
    mask = dynamic_mask(ref, fraction=fraction, threshold=threshold, crop=crop)
    if not mask.any():
        raise InputError("region split: no dynamic pixel found (series without motion?); "
                         "pass a lower fraction or a fixed threshold")
    if mask.all():
        raise InputError("region split: every pixel is dynamic; pass a higher fraction or threshold")
    dyn = region_metrics(ref, rec, mask, crop)
    sta = region_metrics(ref, rec, ~mask, crop)
    return {
        "dynamic_psnr": float(np.mean(dyn["psnr"])),
        "static_psnr": float(np.mean(sta["psnr"])),
        "dynamic_ssim": float(np.mean(dyn["ssim"])),
        "static_ssim": float(np.mean(sta["ssim"])),
        "dynamic_fraction": float(mask.mean()),
    }


# ---------------------------------------------------------------------------
# summary


def summarise(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> dict[str, Union[float, str]]:
    """Frame-mean ``psnr``, ``ssim``, ``nmse``, ``haarpsi`` and ``dists`` of one series.

    ``haarpsi`` is present only when it can be computed (piq installed, frames at least
    16x16); otherwise the key ``haarpsi_unavailable`` holds the reason. Likewise ``dists``
    (:mod:`recon.dists`: VGG16 weights from ``$CRUNET_VGG16_WEIGHTS``, DISTS_pytorch
    installed, frames at least 32x32) or ``dists_unavailable``; without weights that check
    costs nothing.
    """
    from recon import dists as dists_metric  # here: recon.dists imports this module

    out: dict[str, Union[float, str]] = {
        "psnr": float(np.mean(psnr(ref, rec, crop))),
        "ssim": float(np.mean(ssim(ref, rec, crop))),
        "nmse": float(np.mean(nmse(ref, rec, crop))),
    }
    shape = tuple(ref.shape[-2:]) if isinstance(ref, torch.Tensor) else np.shape(ref)[-2:]
    if crop is not None:
        shape = tuple(int(c) for c in crop)
    try:
        _load_piq_haarpsi()
    except RuntimeError as exc:
        out["haarpsi_unavailable"] = str(exc)
    else:
        if min(shape) < HAARPSI_MIN_SIZE:
            out["haarpsi_unavailable"] = (f"image size {tuple(shape)} is smaller than "
                                          f"{HAARPSI_MIN_SIZE}x{HAARPSI_MIN_SIZE}")
        else:
            out["haarpsi"] = float(np.mean(haarpsi(ref, rec, crop)))
    available, reason = dists_metric.dists_available()
    if available and min(shape) < dists_metric.MIN_SIZE:
        available, reason = False, (f"image size {tuple(shape)} is smaller than "
                                    f"{dists_metric.MIN_SIZE}x{dists_metric.MIN_SIZE}")
    if available:
        out["dists"] = float(np.mean(dists_metric.dists(ref, rec, crop=crop)))
    else:
        out["dists_unavailable"] = reason
    return out
