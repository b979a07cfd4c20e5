"""Walsh adaptive-combine coil maps (Walsh, Gmitro, Marcellin, MRM 43:682-690, 2000).

At every pixel the coil signal covariance ``R(r) = sum_{r' in window(r)} x(r') x(r')^H``
of low-resolution coil images ``x [c, y, x]`` is formed (a box average of the
outer products, computed per upper-triangle entry with ``avg_pool2d``); its dominant
eigenvector is the relative coil sensitivity. Vectors are unit norm, phase-rotated
so their projection on a reference vector (the first principal component of the
data, a virtual body coil) is real and positive, as for ESPIRiT. There is no
support mask: maps are defined (if meaningless) outside the object too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from recon.coils.eigen import dominant_eigenvectors, principal_coil_vector
from recon.errors import InputError


def smoothed_covariance(images: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """Box-averaged coil covariance, planar ``[c, c, y, x]`` (Hermitian per pixel).

    Parameters
    ----------
    images : complex64 ``[c, y, x]``.
    window : odd box size ``(wy, wx)`` in pixels (zero padding at the edges).
    """
    c, ny, nx = images.shape
    iu, ju = torch.triu_indices(c, c)
    prod = images[iu] * images[ju].conj()  # [pairs, y, x]
    planes = torch.view_as_real(prod).permute(0, 3, 1, 2).reshape(1, -1, ny, nx)
    wy, wx = window  # separable box: two 1D passes
    planes = F.avg_pool2d(planes, (wy, 1), stride=1, padding=(wy // 2, 0))
    planes = F.avg_pool2d(planes, (1, wx), stride=1, padding=(0, wx // 2))
    upper = torch.view_as_complex(planes.reshape(-1, 2, ny, nx).permute(0, 2, 3, 1).contiguous())
    out = torch.empty(c, c, ny, nx, dtype=torch.complex64)
    out[iu, ju] = upper
    out[ju, iu] = upper.conj()
    return out


def walsh_maps(images, window: int | tuple[int, int] = 7, coarse: int = 1, refine: int = 3,
               reference=None):
    """Walsh coil maps from low-resolution coil images.

    Parameters
    ----------
    images : complex ``[c, y, x]`` (numpy array or torch tensor), e.g. the inverse
        FFT of the zero-padded calibration lines.
    window : box size in pixels, odd (an even size is made odd by adding one).
    coarse, refine : eigen-decomposition on every ``coarse``-th pixel followed by
        ``refine`` power iterations (see :func:`recon.coils.eigen.dominant_eigenvectors`).
    reference : complex ``[c]`` phase reference; default the first principal
        component of ``images``.

    Returns
    -------
    complex64 maps ``[c, y, x]``, unit norm over coils (numpy for numpy input).
    """
    was_numpy = isinstance(images, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(images)) if was_numpy else images
    if not torch.is_tensor(x) or x.ndim != 3:
        raise InputError(f"Walsh maps need coil images [coils, y, x], got {getattr(x, 'shape', type(x))}")
    x = x.to(torch.complex64)
    win = (window, window) if isinstance(window, (int, np.integer)) and not isinstance(window, bool) else window
    try:
        win = tuple(int(w) for w in win)
    except (TypeError, ValueError):
        raise InputError(f"Walsh window must be an integer or a pair, got {window!r}") from None
    if len(win) != 2 or min(win) < 1:
        raise InputError(f"Walsh window must be one or two integers >= 1, got {window!r}")
    win = tuple(w + 1 - w % 2 for w in win)
    if isinstance(coarse, bool) or not isinstance(coarse, (int, np.integer)) or coarse < 1:
        raise InputError(f"Walsh option coarse must be an integer >= 1, got {coarse!r}")
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise InputError(f"Walsh option refine must be an integer >= 0, got {refine!r}")
    if not torch.isfinite(torch.view_as_real(x)).all():
        raise InputError("coil images contain NaN or infinite values")
    if not x.abs().amax() > 0:
        raise InputError("coil images are all zero: no signal to estimate coil maps from")
    with torch.no_grad():
        ref = principal_coil_vector(x, "Walsh") if reference is None else torch.as_tensor(reference).to(torch.complex64)
        cov = smoothed_covariance(x, win)
        maps, _ = dominant_eigenvectors(cov, ref, coarse=int(coarse), refine=int(refine), method="Walsh")
    return maps.numpy() if was_numpy else maps
