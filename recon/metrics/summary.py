"""All metrics of one series as frame means: PSNR, SSIM, NMSE, and HaarPSI / DISTS where possible.

HaarPSI needs the optional ``piq`` package and DISTS needs VGG16 weights and the
``DISTS_pytorch`` package; a metric that cannot be computed is replaced by a
``<name>_unavailable`` key holding the reason. :mod:`recon.metrics.dists` (network code)
is imported only when :func:`summarise` is called.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from recon.metrics import piq_haarpsi
from recon.metrics.frames import ArrayLike, Crop
from recon.metrics.quality import nmse, psnr, ssim

__all__ = ["summarise"]


def summarise(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> dict[str, Union[float, str]]:
    """Frame-mean ``psnr``, ``ssim``, ``nmse``, ``haarpsi`` and ``dists`` of one series.

    ref, rec: complex or real [t, y, x] (or [y, x]), numpy or torch; crop: optional
    centre crop (h, w). ``haarpsi`` is present only when it can be computed (piq
    installed, frames at least 16x16); otherwise the key ``haarpsi_unavailable`` holds
    the reason. Likewise ``dists`` (:mod:`recon.metrics.dists`: VGG16 weights from
    ``$CRUNET_VGG16_WEIGHTS``, DISTS_pytorch installed, frames at least 32x32) or
    ``dists_unavailable``; without weights that check costs nothing.
    """
    from recon.metrics import dists as dists_metric  # here: importing recon.metrics stays light

    out: dict[str, Union[float, str]] = {
        "psnr": float(np.mean(psnr(ref, rec, crop))),
        "ssim": float(np.mean(ssim(ref, rec, crop))),
        "nmse": float(np.mean(nmse(ref, rec, crop))),
    }
    shape = tuple(ref.shape[-2:]) if isinstance(ref, torch.Tensor) else np.shape(ref)[-2:]
    if crop is not None:
        shape = tuple(int(c) for c in crop)
    min_size = piq_haarpsi.HAARPSI_MIN_SIZE
    try:
        piq_haarpsi.load_piq_haarpsi()
    except RuntimeError as exc:
        out["haarpsi_unavailable"] = str(exc)
    else:
        if min(shape) < min_size:
            out["haarpsi_unavailable"] = f"image size {tuple(shape)} is smaller than {min_size}x{min_size}"
        else:
            out["haarpsi"] = float(np.mean(piq_haarpsi.haarpsi(ref, rec, crop)))
    available, reason = dists_metric.dists_available()
    if available and min(shape) < dists_metric.MIN_SIZE:
        available, reason = False, (f"image size {tuple(shape)} is smaller than "
                                    f"{dists_metric.MIN_SIZE}x{dists_metric.MIN_SIZE}")
    if available:
        out["dists"] = float(np.mean(dists_metric.dists(ref, rec, crop=crop)))
    else:
        out["dists_unavailable"] = reason
    return out
