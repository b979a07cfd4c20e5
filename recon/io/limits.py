"""Bounds on what an input may declare, checked before anything is allocated.

A header declares the sizes that decide how much memory reading it takes (matrix,
``encodingLimits``, coil counts, the number of acquisitions, the shape of a MATLAB
array); a damaged or hostile file can declare any of them. Every reader checks
them against these limits first and stops with a one-line
:class:`~recon.errors.InputError` naming the sizes and the limit. The limits lie
far above any cine protocol (CMRxRecon SAX: 12 frames x 10 coils x 246 x 512 =
15 M samples per slice, 2^24).

Error messages stay short: :func:`short_list` writes index lists as runs and cuts
them, :func:`one_line` folds and cuts any message.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from recon.errors import InputError

#: Largest matrix size along any axis (encoded and recon space).
MAX_MATRIX = 4096
#: Largest coil count (ISMRMRD's channel mask holds 1024 channels).
MAX_COILS = 1024
#: Largest k-space of one slice, frames x coils x ky x kx complex samples (2 GiB of complex64).
MAX_SAMPLES_PER_SLICE = 2 ** 28
#: Largest number of acquisitions in a raw file.
MAX_ACQUISITIONS = 2 ** 21
#: Largest declared size of a raw file's acquisition table (headers and data pointers) in bytes.
MAX_TABLE_BYTES = 2 ** 30
#: Largest XML header in bytes.
MAX_XML_BYTES = 2 ** 24
#: Largest array of a CMRxRecon .mat file, in samples (4 GiB of complex64).
MAX_MAT_SAMPLES = 2 ** 29
#: Largest magnitude of a real or imaginary part of a k-space sample. Far above any
#: scanner's scale; beyond about 1e18 the sums of squares of the coil-map and
#: reconstruction steps overflow float32 and give zero or NaN images.
MAX_SAMPLE_MAGNITUDE = 1e12
#: Values of a list shown in an error message before it is cut.
MAX_LIST_ITEMS = 6
#: Characters of one error line (messages are short by construction; this cuts what a library says).
MAX_MESSAGE_CHARS = 1000


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last)`` of sorted distinct integers."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def short_list(values: Iterable, max_items: int = MAX_LIST_ITEMS) -> str:
    """Integers as a short text: runs as ``a..b``, at most ``max_items`` runs, then a count.

    ``short_list(range(12, 4000))`` is ``'12..3999'``; ``short_list(range(0, 100, 2))``
    is ``'0, 2, 4, 6, 8, 10, ... (50 in all)'``.
    """
    ints = sorted({int(v) for v in values})
    runs = _runs(ints)
    parts = [str(a) if a == b else (f"{a}, {b}" if b == a + 1 else f"{a}..{b}") for a, b in runs[:max_items]]
    text = ", ".join(parts)
    if len(runs) > max_items:
        text += f", ... ({len(ints)} in all)"
    return text


def one_line(text: object, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line (whitespace folded), cut to ``max_chars`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= max_chars else s[:max_chars - 3] + "..."


def check_matrix(name: str, size: tuple[int, ...], source: str) -> None:
    """Every axis of a matrix size lies in ``1..MAX_MATRIX``."""
    if min(size) < 1 or max(size) > MAX_MATRIX:
        raise InputError(f"{source}: {name} matrix {' x '.join(map(str, size))} outside the supported "
                         f"1..{MAX_MATRIX} per axis")


def check_coils(n_coils: int, source: str) -> None:
    """A coil count lies in ``1..MAX_COILS``."""
    if not 1 <= n_coils <= MAX_COILS:
        raise InputError(f"{source}: {n_coils} coils, outside the supported 1..{MAX_COILS}")


def check_slice_samples(n_t: int, n_c: int, n_ky: int, n_kx: int, source: str) -> None:
    """The k-space of one slice (frames x coils x ky x kx) fits :data:`MAX_SAMPLES_PER_SLICE`."""
    total = int(n_t) * int(n_c) * int(n_ky) * int(n_kx)
    if total > MAX_SAMPLES_PER_SLICE:
        raise InputError(
            f"{source}: one slice would hold {n_t} frames x {n_c} coils x {n_ky} x {n_kx} = {total:.3g} "
            f"k-space samples, more than the supported {MAX_SAMPLES_PER_SLICE:.3g} (check encodingLimits "
            f"and the matrix sizes of the header)"
        )


def bad_sample_arrays(arrays: Iterable[np.ndarray]) -> tuple[list[int], list[int]]:
    """Positions of arrays holding NaN/Inf samples, and of arrays with samples beyond
    :data:`MAX_SAMPLE_MAGNITUDE` (in real or imaginary part)."""
    non_finite, too_large = [], []
    for i, a in enumerate(arrays):
        peak = _peak(a)
        if not np.isfinite(peak):
            non_finite.append(i)
        elif peak > MAX_SAMPLE_MAGNITUDE:
            too_large.append(i)
    return non_finite, too_large


def _peak(a: np.ndarray) -> float:
    """Largest |real| or |imag| of an array (NaN when it holds a NaN, 0 when empty)."""
    a = np.asarray(a)
    if a.size == 0:
        return 0.0
    if np.iscomplexobj(a):
        a = a.view(a.real.dtype) if a.flags.c_contiguous else np.concatenate([a.real.ravel(), a.imag.ravel()])
    return float(np.max(np.abs(a)))
