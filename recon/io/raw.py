"""ISMRMRD raw-data files (HDF5): write acquisitions in bulk, read them back per slice.

The file layout is the one of ``ismrmrd.Dataset`` (and of the C++ library):
``/<group>/xml`` holds the XML header, ``/<group>/data`` the acquisitions as a
compound ``(head, traj, data)`` table. Reference arrays that a simulator or
converter knows are stored beside them with ``Dataset.append_array``, one entry
per slice, as ``ismrmrd_generate_cartesian_shepp_logan`` does with ``csm``:

* ``/<group>/ground_truth`` — complex64 ``[slices][t, y, x]``, fully sampled
  coil-combined reference image on the recon grid (no noise);
* ``/<group>/csm`` — complex64 ``[slices][c, y, x]``, the true coil maps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from recon.errors import InputError
from recon.io.acquisitions import assemble_slices, split_noise
from recon.io.flags import is_noise
from recon.io.header import EncodingInfo, encoding_info, header_to_xml, parse_header
from recon.noise import NOISE_SIGMA_KEY, sigma_from_noise_scan
from recon.slicedata import SliceData

REFERENCE_ARRAYS = ("ground_truth", "csm", "phantom", "coil_images")

log = logging.getLogger("crunet.raw")


@dataclass
class RawFile:
    """Everything read from one ISMRMRD raw file."""

    path: Path
    group: str
    header: xsd.ismrmrdHeader
    encoding: EncodingInfo
    slices: list[SliceData]
    noise: np.ndarray | None
    n_acquisitions: int
    n_ignored: int
    slice_errors: dict[int, str] | None = None


def write_raw(
    path: str | Path,
    header: xsd.ismrmrdHeader | str,
    headers: np.ndarray,
    data: list[np.ndarray],
    group: str = "dataset",
    references: dict[str, list[np.ndarray]] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write an ISMRMRD raw file in one pass.

    Parameters
    ----------
    header : ``ismrmrdHeader`` or its XML.
    headers : ``ACQ_HEADER_DTYPE [n]``; data : n complex64 ``[c, samples]``.
    references : optional arrays stored with ``append_array``, e.g.
        ``{"ground_truth": [x_slice0, ...], "csm": [...]}``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; refusing to overwrite")
    xml = header if isinstance(header, str) else header_to_xml(header)
    table = np.empty(len(headers), dtype=acquisition_dtype)
    table["head"] = headers
    empty = np.zeros(0, dtype=np.float32)
    for i, d in enumerate(data):
        table[i]["traj"] = empty
        table[i]["data"] = np.ascontiguousarray(d, dtype=np.complex64).view(np.float32).ravel()
    with h5py.File(path, "w") as f:
        g = f.create_group(group)
        g.create_dataset("data", data=table, maxshape=(None,), chunks=True)
    with ismrmrd.Dataset(str(path), group, create_if_needed=True) as ds:
        ds.write_xml_header(xml.encode() if isinstance(xml, str) else xml)
        for name, arrays in (references or {}).items():
            for arr in arrays:
                ds.append_array(name, np.ascontiguousarray(arr))
    return path


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an ISMRMRD file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file, so not an ISMRMRD raw file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot open HDF5 file ({exc})") from None


def _find_group(f: h5py.File, path: Path, group: str | None) -> str:
    if group is not None:
        if group not in f:
            raise InputError(f"{path}: no group '{group}' (groups: {sorted(f.keys())})")
        return group
    if "dataset" in f:
        return "dataset"
    candidates = [k for k in f if isinstance(f[k], h5py.Group) and "xml" in f[k]]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{path}: not an ISMRMRD file (no group with an 'xml' header)")
    raise InputError(f"{path}: several ISMRMRD groups {candidates}; choose one")


def read_acquisitions(path: str | Path, group: str | None = None):
    """Header XML, headers ``[n]`` and data of every acquisition of a file.

    Returns ``(group, xml_bytes, headers, data)``; ``data`` is a list of complex64
    ``[c, samples]``.
    """
    path = Path(path)
    with _open(path) as f:
        group = _find_group(f, path, group)
        g = f[group]
        if "xml" not in g:
            raise InputError(f"{path}: group '{group}' has no XML header ('xml' dataset missing)")
        xml = g["xml"][0]
        if "data" not in g:
            raise InputError(f"{path}: group '{group}' has no acquisitions ('data' dataset missing)")
        table = g["data"][()]
    if table.dtype.names is None or "head" not in table.dtype.names:
        raise InputError(f"{path}: '{group}/data' is not an ISMRMRD acquisition table")
    headers = table["head"].copy()
    data = []
    for i, h in enumerate(headers):
        raw = np.asarray(table[i]["data"], dtype=np.float32)
        n_c, n_s = int(h["active_channels"]), int(h["number_of_samples"])
        if raw.size != 2 * n_c * n_s:
            raise InputError(
                f"{path}: acquisition {i} stores {raw.size // 2} complex samples, header says "
                f"{n_c} channels x {n_s} samples"
            )
        data.append(raw.view(np.complex64).reshape(n_c, n_s))
    xml = xml if isinstance(xml, bytes) else str(xml).encode()
    return group, xml, headers, data


def read_raw(path: str | Path, group: str | None = None, frame_dim: str = "auto",
             skip_bad_slices: bool = False) -> RawFile:
    """Read an ISMRMRD raw file into per-slice arrays.

    Parameters
    ----------
    path : ISMRMRD HDF5 file (ours or anyone's Cartesian data).
    group : dataset group; default ``dataset`` or the only group with a header.
    frame_dim : counter used as frame axis: ``phase`` (cine), ``repetition``
        (e.g. interleaved Shepp-Logan data) or ``auto`` (the one that varies).
    skip_bad_slices : leave out slices whose own data is bad (no calibration lines,
        missing frames) and name them in ``RawFile.slice_errors`` instead of raising.

    Raises
    ------
    InputError : naming what is wrong (not HDF5, no header, non-Cartesian, no
        calibration lines, inconsistent coils, indices outside the limits...).
    """
    path = Path(path)
    group, xml, headers, data = read_acquisitions(path, group)
    header = parse_header(xml, source=str(path))
    enc = encoding_info(header, source=str(path))
    keep, noise = split_noise(headers, data)
    errors: dict[int, str] | None = {} if skip_bad_slices else None
    slices = assemble_slices(
        headers[keep], [data[i] for i in keep], enc, header=header, frame_dim=frame_dim,
        source=str(path), acq_numbers=keep, slice_errors=errors,
    )
    n_noise = int(is_noise(headers["flags"]).sum())
    attach_noise_sigma(slices, headers, noise, source=str(path))
    return RawFile(
        path=path, group=group, header=header, encoding=enc, slices=slices, noise=noise,
        n_acquisitions=len(headers), n_ignored=len(headers) - len(keep) - n_noise,
        slice_errors=errors,
    )


def _mean_dwell(headers: np.ndarray) -> float:
    """Mean ``sample_time_us`` of headers (0 when there are none)."""
    return float(np.mean(headers["sample_time_us"])) if len(headers) else 0.0


def attach_noise_sigma(slices: list[SliceData], headers: np.ndarray, noise: np.ndarray | None,
                       source: str = "raw file") -> None:
    """Store the k-space noise std of the data (from the noise scan) in every slice.

    Sets ``SliceData.extra[NOISE_SIGMA_KEY]`` (see :func:`recon.noise.sigma_from_noise_scan`,
    dwell times of the noise and imaging acquisitions from ``headers [n]``); does nothing
    without a noise scan. A noise scan that gives no level (non-finite samples, fewer
    than 2) is logged and left out: the methods then estimate the noise from the data.
    """
    if noise is None or not slices:
        return
    flagged = is_noise(headers["flags"])
    try:
        sigma = sigma_from_noise_scan(noise, _mean_dwell(headers[flagged]), _mean_dwell(headers[~flagged]))
    except InputError as exc:
        log.warning("%s: noise scan unusable (%s); the noise level is estimated from the data", source, exc)
        return
    for s in slices:
        s.extra[NOISE_SIGMA_KEY] = sigma


def read_reference(path: str | Path, name: str, slice_number: int, group: str | None = None):
    """One reference array (``ground_truth``, ``csm``, ``phantom``...) of a slice, or None."""
    path = Path(path)
    with _open(path) as f:
        group = _find_group(f, path, group)
        if name not in f[group]:
            return None
        n = f[group][name].shape[0]
    if slice_number >= n:
        raise InputError(f"{path}: '{name}' has {n} entries, no entry for slice {slice_number}")
    with ismrmrd.Dataset(str(path), group, create_if_needed=False, mode="r") as ds:
        return ds.read_array(name, slice_number)
