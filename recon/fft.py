"""Centred, orthonormal Fourier transforms: the one FFT of the project.

Convention (docs/design.md §3): k-space is centred, so every transform is
``fftshift(fft(ifftshift(x), norm="ortho"))`` over the chosen axes. The shift
order matters on odd sizes (``ifftshift`` before, ``fftshift`` after); with it,
``ifftc(fftc(x)) == x`` and the DC sample sits at index ``n // 2`` for every
``n``, odd or even.

All functions take a ``torch.Tensor`` or a ``numpy.ndarray`` and return the same
kind. NumPy input is computed through torch (shared memory on the way in, a
NumPy array on the way out), so there is exactly one implementation.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _as_tensor(x):
    if isinstance(x, np.ndarray):
        if not np.iscomplexobj(x):
            x = x.astype(np.complex64 if x.dtype != np.float64 else np.complex128)
        return torch.from_numpy(np.ascontiguousarray(x)), True
    if not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if not x.is_complex():
        x = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    return x, False


def _transform(x, dims: Sequence[int], inverse: bool):
    t, was_numpy = _as_tensor(x)
    dims = tuple(dims)
    t = torch.fft.ifftshift(t, dim=dims)
    t = (torch.fft.ifftn if inverse else torch.fft.fftn)(t, dim=dims, norm="ortho")
    t = torch.fft.fftshift(t, dim=dims)
    return t.numpy() if was_numpy else t


def fftc(x: ArrayT, dims: Sequence[int] = (-2, -1)) -> ArrayT:
    """Centred orthonormal forward FFT over ``dims`` (image -> k-space).

    Parameters
    ----------
    x : complex (or real) array of any shape, e.g. images ``[..., y, x]``.
    dims : axes to transform; default the last two.

    Returns
    -------
    Complex array of the same shape.
    """
    return _transform(x, dims, inverse=False)


def ifftc(x: ArrayT, dims: Sequence[int] = (-2, -1)) -> ArrayT:
    """Centred orthonormal inverse FFT over ``dims`` (k-space -> image)."""
    return _transform(x, dims, inverse=True)


def fft2c(x: ArrayT) -> ArrayT:
    """Centred orthonormal 2D FFT over the last two axes ``[..., y, x]``."""
    return _transform(x, (-2, -1), inverse=False)


def ifft2c(x: ArrayT) -> ArrayT:
    """Centred orthonormal 2D inverse FFT over the last two axes ``[..., ky, kx]``."""
    return _transform(x, (-2, -1), inverse=True)
