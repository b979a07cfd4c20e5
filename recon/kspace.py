"""Grid operations on Cartesian k-space: readout oversampling and recon-space crops."""

from __future__ import annotations

import numpy as np
import torch

from recon.errors import InputError
from recon.fft import fftc, ifftc


def center_crop(x, shape: tuple[int, ...], axes: tuple[int, ...] = (-2, -1)):
    """Centre crop along ``axes`` to ``shape``, keeping index ``n // 2`` at ``m // 2``.

    Works on NumPy arrays and torch tensors. A target larger than the input is an error.
    """
    if len(shape) != len(axes):
        raise InputError(f"crop shape {shape} and axes {axes} differ in length")
    index = [slice(None)] * x.ndim
    for size, ax in zip(shape, axes):
        n = x.shape[ax]
        if size > n or size < 1:
            raise InputError(f"cannot crop axis of size {n} to {size}")
        start = n // 2 - size // 2
        index[ax] = slice(start, start + size)
    return x[tuple(index)]


def remove_readout_oversampling(kspace, recon_x: int):
    """Crop the readout FOV of k-space ``[..., kx]`` to ``recon_x`` samples.

    The readout is transformed to image space, centre-cropped (the object lies in
    the central part of an oversampled FOV) and transformed back, so the result is
    k-space of the recon FOV with ``recon_x`` samples. A readout already of size
    ``recon_x`` is returned unchanged. Only the lines holding data are transformed (each line
    on its own, zeros stay zeros): an undersampled cine is mostly lines never acquired
    (the demo's slice, R 8 with 24 ACS lines, holds 23 % of them: 0.34-0.49 -> 0.13-0.15 s).
    """
    n_x = kspace.shape[-1]
    if n_x == recon_x:
        return kspace
    lines = kspace.reshape(-1, n_x)
    held = (lines != 0).any(-1)  # numpy and torch alike: [lines]
    if bool(held.all()):
        return fftc(center_crop(ifftc(kspace, dims=(-1,)), (recon_x,), axes=(-1,)), dims=(-1,))
    cropped = fftc(center_crop(ifftc(lines[held], dims=(-1,)), (recon_x,), axes=(-1,)), dims=(-1,))
    if isinstance(kspace, np.ndarray):
        out = np.zeros((lines.shape[0], recon_x), dtype=cropped.dtype)
    else:
        out = torch.zeros((lines.shape[0], recon_x), dtype=cropped.dtype, device=cropped.device)
    out[held] = cropped
    return out.reshape(tuple(kspace.shape[:-1]) + (recon_x,))


def rss(coil_images, coil_axis: int = -3):
    """Root sum of squares over the coil axis (real, non-negative)."""
    if isinstance(coil_images, np.ndarray):
        return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=coil_axis))
    return coil_images.abs().pow(2).sum(dim=coil_axis).sqrt()


def to_recon_grid(kspace, recon_matrix: tuple[int, int, int]):
    """k-space ``[..., ky, kx]`` on the encoded grid -> the recon grid.

    Removes readout oversampling (``kx`` -> ``recon_matrix[0]``) and, when the
    encoded phase-encode matrix is larger than the recon one (phase oversampling),
    crops ``ky`` in image space the same way.
    """
    rx, ry = int(recon_matrix[0]), int(recon_matrix[1])
    out = remove_readout_oversampling(kspace, rx)
    if out.shape[-2] > ry:
        img = ifftc(out, dims=(-2,))
        out = fftc(center_crop(img, (ry,), axes=(-2,)), dims=(-2,))
    return out


def normalisation_scale(k: torch.Tensor, n_center: int = 24) -> torch.Tensor:
    """Per-sample RMS image magnitude estimated from the central k-space lines.

    ``sqrt(sum |k|^2 / (t * y * x))`` over the ``n_center`` central ky lines (the ACS,
    sampled in every frame) of all coils: by Parseval about the RMS of the coil-combined
    image with unit-norm maps, whatever R is, and computable from measured data alone.
    Learned models see k-space divided by it in training and at inference.
    k ``[b, t, c, y, x]`` -> ``[b]`` (>= tiny).
    """
    b, t, _, ny, nx = k.shape
    n = min(n_center, ny)
    centre = k[..., ny // 2 - n // 2: ny // 2 - n // 2 + n, :]
    energy = torch.view_as_real(centre).float().pow(2).flatten(1).sum(dim=1)
    return (energy / (t * ny * nx)).sqrt().clamp_min(torch.finfo(torch.float32).tiny)


def time_average(kspace: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sampled line's mean over the frames that sampled it.

    kspace : complex ``[..., t, c, y, x]`` (zeros where not sampled); mask : bool or 0/1
    ``[..., t, y]`` (the same leading axes). Returns ``(k [..., c, y, x], sampled [..., y])``,
    zeros on the lines no frame sampled. Linear in each readout line, so it commutes with
    the removal of readout oversampling: average first, then remove it from one array.
    """
    m = mask.to(kspace.real.dtype)
    count = m.sum(-2)
    k = (kspace * m[..., None, :, None]).sum(-4) / count.clamp_min(1)[..., None, :, None]
    return k, count > 0
