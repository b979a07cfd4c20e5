"""The frames every metric scores: magnitude, CMRxRecon centre crop, per-frame max normalisation.

Images are magnitudes of the complex reconstruction. Before scoring, CMRxRecon crops
the centre of each image (``run4Ranking.m``: ``crop(abs(img), [round(sx/3), round(sy/2)])``
with ``sx`` the readout and ``sy`` the phase-encode size of the k-space, whose readout
keeps 2x oversampling; Lustig's ``crop.m`` index rule): the central two thirds of the
field of view along the readout, half along the phase encodes.
:func:`cmrxrecon_crop_size` gives that region's size for our ``[t, y, x]`` layout (y = phase
encode, x = readout, oversampling removed) and ``crop=`` applies it. Cropping happens before normalisation,
as there. Each frame is then divided by its own maximum (``gt / gt.max()``,
``pred / pred.max()``). The challenge also keeps only the first 3 frames and central 2
slices; that selection is the caller's job. One difference: CMRxRecon stores single
precision and skimage then computes in float32; we compute in float64 (differences ~1e-6).

:func:`prepare` does all of this for a reference / reconstruction pair, complex or real
arrays ``[t, y, x]`` (a 2-D ``[y, x]`` is taken as one frame), numpy arrays or torch
tensors, and returns both as float64 CPU tensors ``[t, h, w]``. Bad input raises
:class:`recon.errors.InputError`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

from recon.errors import InputError
from recon.kspace import center_crop as _kspace_center_crop

ArrayLike = Union[np.ndarray, torch.Tensor]
Crop = Optional[Sequence[int]]

__all__ = ["ArrayLike", "Crop", "center_crop", "cmrxrecon_crop_size", "magnitude",
           "normalise_frames", "prepare"]


def magnitude(x: ArrayLike, name: str) -> torch.Tensor:
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


#: CMRxRecon's k-space keeps the scanner's 2x readout oversampling (246 x 512 for SAX cine).
CMRXRECON_READOUT_OVERSAMPLING = 2


def cmrxrecon_crop_size(shape: Sequence[int],
                        removed_oversampling: int = CMRXRECON_READOUT_OVERSAMPLING) -> tuple[int, int]:
    """CMRxRecon's ranking crop (h, w) for images whose last two axes are [y, x].

    ``run4Ranking.m`` keeps ``round(sx/3)`` readout samples and ``round(sy/2)``
    phase-encode lines of the image in the k-space's size (MATLAB order: sx = readout, sy =
    phase encode), and that readout carries 2x oversampling: the challenge scores the
    central two thirds of the field of view along the readout and half of it along the
    phase encodes. The project's images have the oversampling removed (the recon grid), so
    for them ``removed_oversampling`` = 2 gives the same region:
    ``(round(ny / 2), round(2 * nx / 3))``; pass 1 for an image on the oversampled grid.
    """
    if len(shape) < 2:
        raise InputError(f"crop size: need a shape with at least 2 axes, got {tuple(shape)}")
    if int(removed_oversampling) < 1:
        raise InputError(f"crop size: removed_oversampling must be >= 1, got {removed_oversampling}")
    ny, nx = int(shape[-2]), int(shape[-1])
    return max(1, _round_half_up(ny / 2)), min(nx, max(1, _round_half_up(int(removed_oversampling) * nx / 3)))


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


def normalise_frames(x: torch.Tensor, name: str, is_reference: bool) -> torch.Tensor:
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


def prepare(ref: ArrayLike, rec: ArrayLike, crop: Crop) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude, optional centre crop and per-frame max normalisation; both [t, h, w]."""
    r = magnitude(ref, "reference")
    p = magnitude(rec, "reconstruction")
    if r.shape != p.shape:
        raise InputError(
            f"shape mismatch: reference {tuple(r.shape)} vs reconstruction {tuple(p.shape)}")
    if crop is not None:
        r = center_crop(r, crop)
        p = center_crop(p, crop)
    return normalise_frames(r, "reference", True), normalise_frames(p, "reconstruction", False)
