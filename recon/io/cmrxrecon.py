"""CMRxRecon2023 cine files (``cine_sax.mat`` / ``cine_lax.mat``) -> ISMRMRD raw data.

Format (docs/design.md §5): MATLAB v7.3 (HDF5) files holding one complex array, read by
h5py in the order ``(t, sz, sc, ky, kx)`` = (frames, slices, coils, phase encode,
readout) as a compound of ``real``/``imag``; k-space is centred; the readout
carries 2x oversampling (e.g. 246 x 512). Fully sampled files hold
``kspace_full``, undersampled ones ``kspace_sub04`` etc. Mask files
(``cine_sax_mask04.mat``) hold a 0/1 array ``(ky, kx)`` or ``(ky,)``: 24 central
lines plus every R-th line, the same in every frame. MATLAB v5 files (masks are
sometimes saved that way) are read with SciPy.

The converter writes acquisitions through the same code as the simulator
(:func:`recon.io.acquisitions.slice_to_acquisitions`). When fully sampled
k-space is given, the ground truth stored with the file is the root-sum-of-squares
image with readout oversampling removed (the CMRxRecon reference), as complex64
``[t, y, x]`` per slice in ``/dataset/ground_truth``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from recon.errors import InputError
from recon.fft import ifft2c
from recon.io.acquisitions import scan_to_acquisitions
from recon.io.header import CineProtocol, build_cine_header
from recon.io.limits import (MAX_MAT_SAMPLES, MAX_SAMPLE_MAGNITUDE, bad_sample_arrays, check_coils,
                             check_slice_samples, one_line, short_list)
from recon.io.raw import write_raw
from recon.kspace import center_crop, rss
from recon.masks import estimate_acceleration
from recon.slicedata import slice_geometry


def _load_mat_array(path: Path, what: str, check_shape: Callable[[tuple[int, ...]], None] | None = None
                    ) -> np.ndarray:
    """The one data array of a .mat file (v7.3 via h5py, v5 via SciPy), as NumPy.

    Before anything is read, the array's declared shape (h5py order) goes through
    ``check_shape`` and its size is bounded by :data:`~recon.io.limits.MAX_MAT_SAMPLES`;
    a v7.3 dataset must hold written data and a numeric type.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a .mat file")
    if h5py.is_hdf5(path):
        return _load_mat73(path, what, check_shape)
    return _load_mat5(path, what, check_shape)


def _check_size(path: Path, shape: tuple[int, ...], what: str) -> None:
    n = int(np.prod(shape, dtype=np.float64))
    if n > MAX_MAT_SAMPLES:
        raise InputError(f"{path}: {what} array of shape {shape} ({n:.3g} samples) is larger than the "
                         f"supported {MAX_MAT_SAMPLES:.3g} samples")


def _mat73_dataset(f: h5py.File, path: Path, what: str) -> h5py.Dataset:
    """The single dataset of a v7.3 file, checked: numeric or (real, imag), data written."""
    names = [k for k in f.keys() if not k.startswith("#")]
    datasets = [k for k in names if isinstance(f[k], h5py.Dataset)]
    if len(datasets) != 1:
        raise InputError(one_line(f"{path}: expected one {what} array, found {datasets or 'none'}"))
    d = f[datasets[0]]
    dt = d.dtype
    if dt.names is not None:
        if set(dt.names) != {"real", "imag"}:
            raise InputError(one_line(f"{path}: compound array with fields {dt.names}, expected real/imag"))
        numeric = all(np.issubdtype(dt[n], np.number) for n in dt.names)
    else:
        numeric = np.issubdtype(dt, np.number) or dt == np.bool_
    if not numeric:
        raise InputError(one_line(f"{path}: {what} array '{datasets[0]}' has type {dt}, not numbers"))
    stored, declared = d.id.get_storage_size(), d.size * dt.itemsize
    if declared and stored == 0:
        raise InputError(f"{path}: {what} array '{datasets[0]}' declares shape {d.shape} but holds no data "
                         "(never written)")
    if d.id.get_create_plist().get_nfilters() == 0 and stored < declared:
        raise InputError(f"{path}: {what} array '{datasets[0]}' is only partly written ({stored} of "
                         f"{declared} bytes)")
    return d


def _load_mat73(path: Path, what: str, check_shape) -> np.ndarray:
    try:
        with h5py.File(path, "r") as f:
            d = _mat73_dataset(f, path, what)
            _check_size(path, d.shape, what)
            if check_shape is not None:
                check_shape(d.shape)
            if d.dtype.names is None:
                return d[()]
            arr = d[()]
    except InputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, MemoryError) as exc:
        raise InputError(one_line(f"{path}: cannot read the {what} array: file damaged or truncated "
                                  f"({type(exc).__name__}: {exc})", 300)) from None
    out = np.empty(arr.shape, dtype=np.complex64)
    out.real, out.imag = arr["real"], arr["imag"]
    return out


def _load_mat5(path: Path, what: str, check_shape) -> np.ndarray:
    from scipy.io import loadmat, whosmat

    try:
        listed = [v for v in whosmat(path) if not v[0].startswith("__")]
    except Exception as exc:  # noqa: BLE001 - SciPy raises many types on files that are not .mat
        raise InputError(one_line(f"{path}: neither an HDF5 (MATLAB v7.3) nor a MATLAB v5 file ({exc})")) from None
    if len(listed) != 1:
        raise InputError(one_line(f"{path}: expected one {what} array, found {[v[0] for v in listed] or 'none'}"))
    shape = tuple(int(n) for n in reversed(listed[0][1]))  # h5py's axis order
    _check_size(path, shape, what)
    if check_shape is not None:
        check_shape(shape)
    try:
        content = loadmat(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(one_line(f"{path}: cannot read the MATLAB v5 file ({exc})")) from None
    arr = content.get(listed[0][0])
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"{path}: {what} array '{listed[0][0]}' does not hold numbers")
    # MATLAB v5 keeps MATLAB's axis order; reverse it to h5py's convention.
    return np.asarray(arr).transpose()


def _kspace_shape_check(path: Path) -> Callable[[tuple[int, ...]], None]:
    """Checks a declared k-space shape: 4 or 5 axes, at least 8 x 8, one slice within the limits."""
    def check(shape: tuple[int, ...]) -> None:
        if len(shape) not in (4, 5):
            raise InputError(f"{path}: k-space must have 5 axes (t, sz, sc, ky, kx), got shape {shape}")
        full = shape if len(shape) == 5 else (shape[0], 1, *shape[1:])
        if min(full) < 1 or full[3] < 8 or full[4] < 8:
            raise InputError(f"{path}: k-space shape {shape} too small")
        check_coils(full[2], str(path))
        check_slice_samples(full[0], full[2], full[3], full[4], str(path))
    return check


def load_cmrx_kspace(path: str | Path) -> np.ndarray:
    """Cine k-space as complex64 ``[t, sz, sc, ky, kx]`` (a 4D file gets ``sz = 1``).

    Shape and size are checked before the array is read; NaN, infinite or
    overflowing samples (:data:`~recon.io.limits.MAX_SAMPLE_MAGNITUDE`) are an error.
    """
    path = Path(path)
    k = _load_mat_array(path, "k-space", _kspace_shape_check(path))
    if not np.iscomplexobj(k):
        raise InputError(f"{path}: k-space must be complex, got {k.dtype}")
    if k.ndim == 4:
        k = k[:, None]
    k = np.ascontiguousarray(k, dtype=np.complex64)
    _check_values(k, path)
    if not k.any():
        raise InputError(f"{path}: k-space holds only zeros: nothing was sampled")
    return k


def _check_values(k: np.ndarray, path: Path) -> None:
    """Every sample finite and within ``MAX_SAMPLE_MAGNITUDE``; names the frames and slices that are not."""
    per_plane = [k[t, z] for t in range(k.shape[0]) for z in range(k.shape[1])]
    non_finite, too_large = bad_sample_arrays(per_plane)
    for bad, what in ((non_finite, "NaN or infinite samples"),
                      (too_large, f"samples beyond +-{MAX_SAMPLE_MAGNITUDE:.0e} (overflow)")):
        if bad:
            frames = short_list(i // k.shape[1] for i in bad)
            slices = short_list(i % k.shape[1] for i in bad)
            raise InputError(f"{path}: k-space holds {what} (frames {frames}, slices {slices})")


def load_cmrx_mask(path: str | Path, n_ky: int, n_kx: int) -> np.ndarray:
    """Line mask bool ``[ky]`` from a CMRxRecon mask file ``(ky, kx)`` or ``(ky,)``."""
    path = Path(path)

    def check(shape: tuple[int, ...]) -> None:
        if int(np.prod(shape, dtype=np.float64)) > max(n_ky, n_kx) ** 2:
            raise InputError(f"{path}: mask shape {shape} does not match k-space (ky, kx) = {(n_ky, n_kx)}")

    m = np.asarray(_load_mat_array(path, "mask", check)).squeeze()
    if m.ndim == 2 and m.shape == (n_kx, n_ky) and n_kx != n_ky:
        m = m.T  # saved the other way round
    if m.ndim == 2:
        if m.shape != (n_ky, n_kx):
            raise InputError(f"{path}: mask shape {m.shape} does not match k-space (ky, kx) = {(n_ky, n_kx)}")
        rows = m != 0
        partial = rows.any(axis=1) & ~rows.all(axis=1)
        if partial.any():
            raise InputError(f"{path}: mask is not a line mask (ky line {int(np.flatnonzero(partial)[0])} "
                             "is partly sampled)")
        return rows.any(axis=1)
    if m.ndim == 1 and m.shape[0] == n_ky:
        return m != 0
    raise InputError(f"{path}: mask shape {m.shape} does not match k-space lines {n_ky}")


def central_block(line_mask: np.ndarray) -> np.ndarray:
    """ky indices of the contiguous sampled run containing the centre line ``n // 2``."""
    n = len(line_mask)
    c = n // 2
    if not line_mask[c]:
        raise InputError("mask does not sample the k-space centre line: no calibration block")
    lo, hi = c, c
    while lo > 0 and line_mask[lo - 1]:
        lo -= 1
    while hi < n - 1 and line_mask[hi + 1]:
        hi += 1
    return np.arange(lo, hi + 1, dtype=np.int64)


@dataclass(frozen=True)
class ConvertOptions:
    view: str = "sax"
    fov_mm: tuple[float, float] = (300.0, 360.0)
    slice_thickness_mm: float = 8.0
    max_acs: int = 24


def convert_cmrx(
    kspace_path: str | Path,
    output: str | Path,
    mask_path: str | Path | None = None,
    full_path: str | Path | None = None,
    options: ConvertOptions = ConvertOptions(),
) -> dict:
    """Convert a CMRxRecon cine file to an ISMRMRD raw file.

    Parameters
    ----------
    kspace_path : ``cine_*.mat`` with ``(t, sz, sc, ky, kx)`` k-space (fully sampled
        or undersampled).
    mask_path : mask file; required unless the k-space is undersampled already,
        in which case the mask is read off the non-zero lines.
    full_path : fully sampled k-space for the ground truth (may equal
        ``kspace_path``, then the mask undersamples it).
    options : view (geometry), FOV ``(y, x)`` of the recon grid, ACS size cap.

    Returns a summary dict.
    """
    k = load_cmrx_kspace(kspace_path)
    n_t, n_z, n_c, n_ky, n_kx = k.shape
    if mask_path is not None:
        line_mask = load_cmrx_mask(mask_path, n_ky, n_kx)
    else:
        line_mask = np.abs(k).reshape(-1, n_ky, n_kx).max(axis=(0, 2)) > 0
        if line_mask.all():
            raise InputError(f"{kspace_path}: k-space is fully sampled; give --mask to undersample it")
    acs = central_block(line_mask)
    if len(acs) > options.max_acs:  # a fully sampled centre wider than the ACS cap
        c = n_ky // 2
        acs = np.arange(c - options.max_acs // 2, c - options.max_acs // 2 + options.max_acs)
    full = None
    if full_path is not None:
        full = k if Path(full_path) == Path(kspace_path) else load_cmrx_kspace(full_path)
        if full.shape != k.shape:
            raise InputError(f"{full_path}: shape {full.shape} differs from {kspace_path}: {k.shape}")
    R = estimate_acceleration(line_mask, acs)
    if n_kx % 2:
        raise InputError(f"{kspace_path}: readout length {n_kx} is odd; expected 2x oversampled readout")
    protocol = CineProtocol(
        matrix=(n_ky, n_kx // 2), fov_mm=options.fov_mm,
        slice_thickness_mm=options.slice_thickness_mm, readout_oversampling=2, n_phases=n_t,
        n_slices=n_z, n_coils=n_c, acceleration=R, n_acs=len(acs), view=options.view,
        protocol_name=f"cmrxrecon_cine_{options.view}",
    )
    mask = np.broadcast_to(line_mask, (n_t, n_ky))
    slices = [(k[:, z], mask, slice_geometry(options.view, z, n_z, options.slice_thickness_mm))
              for z in range(n_z)]
    headers, data = scan_to_acquisitions(slices, acs)
    gts = []
    if full is not None:
        gts = [rss(center_crop(ifft2c(full[:, z]), (n_ky, n_kx // 2))).astype(np.complex64)
               for z in range(n_z)]
    write_raw(output, build_cine_header(protocol), headers, data,
              references={"ground_truth": gts} if gts else None)
    return {
        "input": str(kspace_path), "output": str(output), "frames": n_t, "slices": n_z,
        "coils": n_c, "ky": n_ky, "kx": n_kx, "acceleration": R, "acs_lines": int(len(acs)),
        "acquisitions": int(len(headers)), "ground_truth": bool(gts),
    }
