"""Coil maps of a slice on the recon grid, from its calibration (ACS) lines.

Design §3: with a frame-constant mask, calibrate from the ACS averaged over frames.
The path from a :class:`~recon.slicedata.SliceData` is

1. :func:`average_acs` — mean over the frames that hold each ACS line (``acs_mask``);
2. readout oversampling removed (:func:`recon.kspace.remove_readout_oversampling`),
   so the lines are ``[c, n_acs, recon_x]``;
3. :func:`maps_from_acs` — the method runs on a grid of ``max(encoded ky, recon y)``
   x ``recon x`` pixels (same FOV as the ky sampling), then a centre crop in y when
   the encoded phase-encode FOV is larger than the recon one (phase oversampling).

:func:`maps_from_acs` works on plain arrays, for tests and for gadgets that hold
the lines without a ``SliceData``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from recon.coils.eigen import EigenSolverError
from recon.coils.espirit import EspiritOptions, auto_coarse, espirit_maps
from recon.coils.merge import merge_sets
from recon.coils.walsh import walsh_maps
from recon.config import check_keys
from recon.errors import InputError
from recon.fft import ifft2c
from recon.kspace import center_crop, remove_readout_oversampling, time_average, to_recon_grid

#: Coil-map estimators by name (a setting typed ``CoilMethod`` names one).
CoilMethod = Literal["espirit", "walsh"]
METHODS: tuple[str, ...] = get_args(CoilMethod)
WALSH_OPTIONS = ("window", "coarse", "refine", "taper")


def average_acs(acs: np.ndarray, acs_mask: np.ndarray | None = None) -> np.ndarray:
    """Time-averaged calibration lines.

    Parameters
    ----------
    acs : complex ``[t, c, n_acs, kx]``, zeros where a frame lacks a line.
    acs_mask : bool ``[t, n_acs]``; default: every frame holds every line.

    Returns
    -------
    complex64 ``[c, n_acs, kx]``: per line, the mean over the frames that hold it.
    """
    acs = np.asarray(acs)
    if acs.ndim != 4:
        raise InputError(f"ACS must be [frames, coils, lines, kx], got shape {acs.shape}")
    t, _, n_acs, _ = acs.shape
    mask = np.ones((t, n_acs), dtype=bool) if acs_mask is None else np.asarray(acs_mask, dtype=bool)
    if mask.shape != (t, n_acs):
        raise InputError(f"ACS mask shape {mask.shape} does not match ACS lines {(t, n_acs)}")
    counts = mask.sum(0)
    if (counts == 0).any():
        missing = [int(i) for i in np.flatnonzero(counts == 0)]
        raise InputError(f"ACS line(s) at positions {missing} are held by no frame")
    total = np.einsum("tcly,tl->cly", acs.astype(np.complex64), mask.astype(np.float32))
    return (total / counts[None, :, None]).astype(np.complex64)


def calibration_region(s) -> np.ndarray:
    """Time-averaged ACS of a slice on the recon readout grid.

    Returns complex64 ``[c, n_acs, recon_x]`` (lines at ``s.acs_lines`` of the
    encoded ky grid).
    """
    acs = average_acs(s.acs, s.acs_mask)
    return np.ascontiguousarray(remove_readout_oversampling(acs, int(s.encoding.recon_matrix[0])),
                                dtype=np.complex64)


def contiguous_block(acs_lines: np.ndarray, n_ky: int) -> slice:
    """Positions (in ``acs_lines``) of the longest run of consecutive lines,
    preferring the run that holds the k-space centre line ``n_ky // 2``."""
    lines = np.asarray(acs_lines, dtype=np.int64)
    if lines.ndim != 1 or len(lines) == 0:
        raise InputError("no calibration lines")
    if np.any(np.diff(lines) <= 0):
        raise InputError(f"calibration line indices must be strictly ascending, got {lines.tolist()}")
    if lines[0] < 0 or lines[-1] >= n_ky:
        raise InputError(f"calibration line indices {lines.min()}..{lines.max()} outside 0..{n_ky - 1}")
    breaks = np.flatnonzero(np.diff(lines) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(lines)]])
    centre = [i for i, (a, b) in enumerate(zip(starts, ends)) if lines[a] <= n_ky // 2 <= lines[b - 1]]
    best = centre[0] if centre else int(np.argmax(ends - starts))
    return slice(int(starts[best]), int(ends[best]))


def _centred_lines(lines: np.ndarray, block: slice, n_ky: int, size: int) -> slice:
    """At most ``size`` lines of the run ``block``, centred on ``n_ky // 2`` where possible."""
    n = block.stop - block.start
    if n <= size:
        return block
    start = int(np.clip(n_ky // 2 - size // 2 - lines[block.start], 0, n - size))
    return slice(block.start + start, block.start + start + size)


def _grid(n_ky: int, shape: tuple[int, int] | None, nx: int) -> tuple[int, tuple[int, int]]:
    ny = n_ky if shape is None else int(shape[0])
    if shape is not None and int(shape[1]) != nx:
        raise InputError(
            f"ACS readout has {nx} samples but the map grid has {int(shape[1])} columns; remove "
            "readout oversampling first (recon.kspace.remove_readout_oversampling)"
        )
    if ny < 1 or n_ky < 1:
        raise InputError(f"grid sizes must be positive (ky lines {n_ky}, map rows {ny})")
    return max(ny, n_ky), (ny, nx)


def maps_from_acs(acs: np.ndarray, acs_lines: np.ndarray, n_ky: int, shape: tuple[int, int] | None = None,
                  method: str = "espirit", **options) -> np.ndarray:
    """Coil maps from calibration lines given as plain arrays.

    Parameters
    ----------
    acs : complex ``[c, n_acs, nx]``, centred k-space lines on the sample spacing of
        the output grid in x (oversampling already removed).
    acs_lines : int ``[n_acs]``, ky index of each line in a k-space of ``n_ky`` lines
        (centre line ``n_ky // 2``).
    n_ky : number of phase-encode lines of that k-space (its FOV sets the y spacing).
    shape : output grid ``(y, x)``; default ``(n_ky, nx)``. A smaller ``y`` is a
        centre crop (phase oversampling), a larger one zero-fill interpolation.
    method : ``"espirit"`` (options: :class:`~recon.coils.espirit.EspiritOptions`
        fields) or ``"walsh"`` (options: ``window``, box size in pixels, default 7,
        the best of 5..21 on our phantoms at 128 and 256 pixels; ``coarse`` (default as ESPIRiT's) and ``refine``
        (default 3) as in :func:`~recon.coils.eigen.dominant_eigenvectors`;
        ``taper``: a Hann taper on the lines before the low-resolution image,
        default True).

    Returns
    -------
    complex64 ``[c, y, x]`` (ESPIRiT with ``sets=2``: ``[2, c, y, x]``).

    Raises
    ------
    InputError : unknown method or option, bad shapes or line indices, too few lines;
        :class:`~recon.coils.eigen.EigenSolverError` when the eigen-solver fails or
        the maps come out NaN/Inf.
    """
    if method not in METHODS:
        raise InputError(f"unknown coil-map method '{method}'; choose one of {list(METHODS)}")
    acs = np.asarray(acs)
    if acs.ndim != 3 or not np.iscomplexobj(acs):
        raise InputError(f"ACS must be complex [coils, lines, kx], got {acs.dtype} {acs.shape}")
    if not np.isfinite(acs).all():
        raise InputError("ACS data contain NaN or infinite values")
    lines = np.asarray(acs_lines, dtype=np.int64)
    if lines.shape != (acs.shape[1],):
        raise InputError(f"{acs.shape[1]} ACS lines but {lines.size} line indices")
    n_grid, out_shape = _grid(int(n_ky), shape, acs.shape[2])
    block = contiguous_block(lines, int(n_ky))
    if method == "espirit":
        opts = EspiritOptions.from_dict(options)
        block = _centred_lines(lines, block, int(n_ky), opts.calib_size[0])
        maps = espirit_maps(acs[:, block], (n_grid, acs.shape[2]), options=opts)
    else:
        maps = _walsh(acs, lines, block, int(n_ky), n_grid, options)
    if n_grid > out_shape[0]:
        maps = center_crop(maps, out_shape)
    if not np.isfinite(maps).all():
        raise EigenSolverError(f"{method} coil maps came out NaN/Inf (calibration values overflow?)")
    return np.ascontiguousarray(maps, dtype=np.complex64)


def _walsh(acs, lines, block, n_ky, n_grid, options) -> np.ndarray:
    check_keys("Walsh options", options, WALSH_OPTIONS)
    lines = lines[block]
    sub = acs[:, block]
    n_lines = len(lines)
    taper = options.get("taper", True)
    if taper:
        sub = sub * _hann(n_lines)[None, :, None] * _hann(sub.shape[2])[None, None, :]
    kspace = np.zeros((acs.shape[0], n_grid, acs.shape[2]), dtype=np.complex64)
    rows = lines + (n_grid // 2 - n_ky // 2)
    kspace[:, rows] = sub
    images = ifft2c(kspace)
    window = options.get("window", 7)
    coarse = options.get("coarse")
    coarse = auto_coarse((n_grid, acs.shape[2])) if coarse is None else coarse
    return walsh_maps(images, window=window, coarse=coarse, refine=options.get("refine", 3))


def _hann(n: int) -> np.ndarray:
    """Symmetric Hann taper that stays non-zero at the ends (no data thrown away)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(n) + 1) / (n + 1))).astype(np.float32)


def estimate_maps(s, method: str = "espirit", second_set: bool = True, **options) -> np.ndarray:
    """Coil maps of a slice on its recon grid.

    Parameters
    ----------
    s : :class:`~recon.slicedata.SliceData`.
    method, options : see :func:`maps_from_acs` (``sets`` is this function's choice).
    second_set : ESPIRiT only: also compute the second map set and merge the two into
        one from the slice's own data (:func:`recon.coils.merge.merge_sets`) where the
        second set is not cropped away. Measured with ``crunet validate`` (held-out patient,
        R 8, 3 cases a set, full FOV PSNR), first set only -> merged: held-out acquisitions
        CG-SENSE 35.41 -> 37.80 dB, L+S 35.61 -> 39.94, crunet_ca 37.21 -> 40.41 (with the
        simulator's true maps 40.61); training acquisitions CG-SENSE 31.16 -> 33.03, L+S
        32.29 -> 34.05, crunet_ca 34.32 -> 37.97. Skipped when the encoded field of view
        along y is larger than the recon one (phase oversampling: the maps are cropped and
        no edge meets another), and the merge returns the first set when fewer pixels than
        one row have a second-set weight above :data:`recon.coils.merge.MERGE_MIN_WEIGHT`.

    Returns
    -------
    complex64 ``[c, recon_y, recon_x]``.

    Raises
    ------
    InputError : as :func:`maps_from_acs`; an eigen-solver failure names the slice.
    """
    if "sets" in options:
        raise InputError("estimate_maps returns one map set; use second_set=True/False, not 'sets'")
    acs = calibration_region(s)
    rx, ry = int(s.encoding.recon_matrix[0]), int(s.encoding.recon_matrix[1])
    n_ky = int(s.kspace.shape[-2])
    merge = bool(second_set) and method == "espirit" and n_ky == ry
    try:
        maps = maps_from_acs(acs, s.acs_lines, n_ky=n_ky, shape=(ry, rx), method=method,
                             **({**options, "sets": 2} if merge else options))
    except EigenSolverError as exc:
        raise InputError(f"coil maps of slice {s.slice_index}: {exc}") from None
    if not merge:
        return maps
    return merge_sets(*merge_data(s), maps)


def merge_data(s) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`recon.coils.merge.merge_sets` takes from a slice (:class:`recon.slicedata.SliceData`):
    its time-averaged k-space on the recon grid ``[c, y, x]`` and the lines some frame sampled ``[y]``."""
    average, sampled = time_average(torch.from_numpy(np.ascontiguousarray(s.kspace)), torch.from_numpy(s.mask))
    return to_recon_grid(average, s.encoding.recon_matrix), sampled


def compare_maps(maps: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Agreement of two sets of maps up to a per-pixel common phase.

    Each pixel's reference vector is normalised to unit norm over coils (true maps
    usually are not); ``maps`` is rotated by the phase of ``<maps, reference>`` at
    that pixel, so only the relative coil sensitivities are compared.

    Parameters
    ----------
    maps, reference : complex ``[c, y, x]``.
    mask : bool ``[y, x]`` where to compare (e.g. the object support); default all.

    Returns
    -------
    dict: ``rel_rms`` = sqrt(sum |maps e^{i phi} - ref|^2 / sum |ref|^2) over the mask,
    ``median`` and ``p95`` of the per-pixel error norm, ``pixels`` compared.
    """
    a = np.asarray(maps)
    b = np.asarray(reference)
    if a.shape != b.shape or a.ndim != 3:
        raise InputError(f"maps to compare must both be [c, y, x] of one shape, got {a.shape} and {b.shape}")
    m = np.ones(a.shape[1:], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != a.shape[1:]:
        raise InputError(f"mask shape {m.shape} does not match the maps {a.shape[1:]}")
    if not m.any():
        raise InputError("empty mask: no pixels to compare maps on")
    norm = np.sqrt((np.abs(b) ** 2).sum(0))
    b = b / np.where(norm > 0, norm, 1)
    ip = (a.conj() * b).sum(0)
    rot = np.exp(1j * np.angle(ip))
    err = np.sqrt((np.abs(a * rot - b) ** 2).sum(0))[m]
    ref = (np.abs(b) ** 2).sum(0)[m]
    return {
        "rel_rms": float(np.sqrt((err ** 2).sum() / max(ref.sum(), 1e-30))),
        "median": float(np.median(err)),
        "p95": float(np.percentile(err, 95)),
        "pixels": int(m.sum()),
    }
