"""Where the heart is in a cine: the region that moves.

The beating heart is where the magnitude changes most over the cardiac cycle. Every
figure that shows a heart-centred crop or an x-t profile through the ventricle, and the
dynamic/static region split of the metrics, locate it from the temporal standard
deviation of the reference, which needs no segmentation and no knowledge of the view.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from recon.errors import InputError


def heart_centre(frames: np.ndarray, radius: float = 0.07, prior: float = 0.3) -> tuple[int, int]:
    """``(y, x)`` of the beating ventricles in ``frames [t, y, x]``.

    The temporal standard deviation of the magnitude is divided by its smooth intensity
    envelope (a Gaussian of 0.1 x the smaller side over the mean image), so coil shading
    near the chest wall does not pass for motion; the centre is the strongest blob of
    that relative motion of about ``radius`` x the side (a Laplacian-of-Gaussian
    detector: the ring of a contracting ventricle is a blob, the moving chest wall a
    line), weighted by a broad Gaussian prior (sigma ``prior`` x the side) around the
    image centre, where cardiac views are planned to put the heart.
    """
    mag = np.abs(np.asarray(frames))
    if mag.ndim != 3 or min(mag.shape) < 1:
        raise InputError(f"frames must be [t, y, x], got shape {mag.shape}")
    ny, nx = mag.shape[-2:]
    side = min(ny, nx)
    envelope = ndimage.gaussian_filter(mag.mean(axis=0), 0.1 * side)
    relative = mag.std(axis=0) / np.maximum(envelope, 0.05 * max(float(envelope.max()), 1e-12))
    blob = -ndimage.gaussian_laplace(relative, sigma=max(1.0, radius * side / np.sqrt(2)))
    yy, xx = np.meshgrid(np.arange(ny) - ny / 2, np.arange(nx) - nx / 2, indexing="ij")
    weight = np.exp(-(yy**2 + xx**2) / (2 * (prior * side) ** 2))
    y, x = np.unravel_index(int(np.argmax(blob * weight)), blob.shape)
    return int(y), int(x)


def heart_box(frames: np.ndarray, fraction: float = 0.5) -> tuple[slice, slice]:
    """A square crop around :func:`heart_centre`, ``fraction`` of the smaller image side,
    moved inside the image where it would cross an edge. Returns ``(rows, cols)`` slices."""
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must lie in (0, 1], got {fraction}")
    ny, nx = np.asarray(frames).shape[-2:]
    side = max(1, int(round(fraction * min(ny, nx))))
    cy, cx = heart_centre(frames)
    y0 = int(np.clip(cy - side // 2, 0, ny - side))
    x0 = int(np.clip(cx - side // 2, 0, nx - side))
    return slice(y0, y0 + side), slice(x0, x0 + side)
