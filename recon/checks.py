"""Argument checks shared by the core: each raises :class:`InputError` naming the value."""

from __future__ import annotations

import numpy as np

from recon.errors import InputError


def check_shape(shape, minimum: int = 1, name: str = "shape") -> tuple[int, int]:
    """A 2D grid shape ``(ny, nx)`` as two ints, each at least ``minimum``.

    Accepts any pair of integral values (Python or NumPy ints, ``32.0``); anything
    else (one or three sizes, ``32.5``, ``None``) raises.
    """
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a pair of integers (ny, nx), got {shape!r}") from None
    if len(dims) != 2 or any(d != s for d, s in zip(dims, shape)):
        raise InputError(f"{name} must be a pair of integers (ny, nx), got {shape!r}")
    if min(dims) < minimum:
        raise InputError(f"{name} {dims} too small: each dimension must be >= {minimum}")
    return dims  # type: ignore[return-value]


def check_count(name: str, value: int) -> int:
    """A count: an integer (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
