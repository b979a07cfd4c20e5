"""Image-quality metrics for cine reconstructions, computed as CMRxRecon computes them.

Modules, one job each:

- :mod:`recon.metrics.frames`: the frames every metric scores: magnitude, the CMRxRecon
  centre crop (:func:`cmrxrecon_crop_size`, :func:`center_crop`), each frame divided by
  its own maximum (:func:`recon.metrics.frames.prepare`);
- :mod:`recon.metrics.quality`: PSNR, SSIM, NMSE per frame (the CMRxRecon definitions)
  and the differentiable SSIM :func:`ssim_torch` (also the training loss's);
- :mod:`recon.metrics.piq_haarpsi`: HaarPSI through the optional ``piq`` package;
- :mod:`recon.metrics.dists`: DISTS with its own VGG16, and
  :mod:`recon.metrics.dists_weights`: its weight files; not imported here (a network),
  :func:`summarise` loads it when called;
- :mod:`recon.metrics.regions`: the dynamic / static split of a cine series and PSNR /
  SSIM inside a region;
- :mod:`recon.metrics.summary`: :func:`summarise`, the frame means of all of them.

All metric functions take ``ref`` and ``rec`` as complex or real arrays ``[t, y, x]``
(a 2-D ``[y, x]`` is taken as one frame), numpy arrays or torch tensors, and return
per-frame values as a numpy float64 array ``[t]``. Bad input raises
:class:`recon.errors.InputError`.
"""

from __future__ import annotations

from recon.metrics.frames import ArrayLike, Crop, center_crop, cmrxrecon_crop_size
from recon.metrics.piq_haarpsi import haarpsi
from recon.metrics.quality import nmse, psnr, ssim, ssim_torch
from recon.metrics.regions import (
    dynamic_mask,
    masked_psnr,
    masked_ssim,
    region_metrics,
    region_split_metrics,
)
from recon.metrics.summary import summarise

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
