"""ISMRMRD raw-data files (HDF5): write acquisitions in bulk, read them back per slice.

The file layout is the one of ``ismrmrd.Dataset`` (and of the C++ library):
``/<group>/xml`` holds the XML header, ``/<group>/data`` the acquisitions as a
compound ``(head, traj, data)`` table. Reference arrays that a simulator or
converter knows are stored beside them with ``Dataset.append_array``, one entry
per slice, as ``ismrmrd_generate_cartesian_shepp_logan`` does with ``csm``:

* ``/<group>/ground_truth`` — complex64 ``[slices][t, y, x]``, fully sampled
  coil-combined reference image on the recon grid (no noise);
* ``/<group>/csm`` — complex64 ``[slices][c, y, x]``, the true coil maps.

``ismrmrd_generate_cartesian_shepp_logan`` writes no ``ground_truth`` but ``phantom``
(``[slices][y, x]``, its noise-free object) beside ``csm``: :func:`read_ground_truth` makes the
reference of such files from the two.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from recon.errors import InputError
from recon.io.assemble import assemble_slices, split_noise
from recon.io.flags import is_noise
from recon.io.h5guard import HDF5_LOCK, check_vlen_heaps
from recon.io.header import encoding_info, header_to_xml, parse_header
from recon.io.limits import MAX_ACQUISITIONS, MAX_LIST_ITEMS, MAX_TABLE_BYTES, MAX_XML_BYTES, one_line
from recon.noise import NOISE_SIGMA_KEY, sigma_from_noise_scan
from recon.slicedata import ACQ_HEADER_DTYPE, EncodingInfo, SliceData

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
        raise InputError(one_line(f"{path}: cannot open HDF5 file ({exc})")) from None


@contextmanager
def _unreadable_as_input_error(path: Path, what: str):
    """HDF5 failures while reading ``what`` (a damaged or truncated file) as one :class:`InputError`."""
    try:
        yield
    except InputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, MemoryError) as exc:
        raise InputError(one_line(f"{path}: cannot read {what}: file damaged or truncated "
                                  f"({type(exc).__name__}: {exc})", 300)) from None


def _find_group(f: h5py.File, path: Path, group: str | None) -> str:
    if group is not None:
        if group not in f:
            raise InputError(f"{path}: no group '{group}' (groups: {_names(f)})")
        if not isinstance(f[group], h5py.Group):
            raise InputError(f"{path}: '{group}' is a {type(f[group]).__name__}, not a group")
        return group
    if "dataset" in f:
        return "dataset"
    candidates = [k for k in f if isinstance(f[k], h5py.Group) and "xml" in f[k]]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{path}: not an ISMRMRD file (no group with an 'xml' header)")
    raise InputError(f"{path}: several ISMRMRD groups ({_names(candidates)}); choose one")


def _names(names) -> str:
    """At most a few names, for error messages."""
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:MAX_LIST_ITEMS])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_LIST_ITEMS else "")


def _dataset(g: h5py.Group, name: str, path: Path, what: str) -> h5py.Dataset:
    """``g[name]`` as a dataset that holds written data."""
    if name not in g:
        raise InputError(f"{path}: group '{g.name}' has no {what} ('{name}' dataset missing)")
    d = g[name]
    if not isinstance(d, h5py.Dataset):
        raise InputError(f"{path}: '{d.name.lstrip('/')}' is a {type(d).__name__}, not a dataset")
    if d.size and d.id.get_storage_size() == 0:
        raise InputError(f"{path}: '{d.name.lstrip('/')}' declares shape {d.shape} but holds no data "
                         "(never written)")
    return d


def _read_xml(g: h5py.Group, path: Path) -> bytes:
    """The XML header of a group, bounded by ``MAX_XML_BYTES`` before it is read."""
    d = _dataset(g, "xml", path, "XML header")
    if d.size == 0:
        raise InputError(f"{path}: '{d.name.lstrip('/')}' is empty: no XML header")
    if d.dtype.itemsize * min(d.size, 1) > MAX_XML_BYTES:
        raise InputError(f"{path}: XML header declared as {d.dtype.itemsize} bytes, more than the "
                         f"supported {MAX_XML_BYTES}")
    check_vlen_heaps(d, path)
    value = d[()] if d.ndim == 0 else d[(0,) * d.ndim]
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    return value if isinstance(value, bytes) else str(value).encode()


def _read_table(g: h5py.Group, path: Path) -> np.ndarray:
    """The acquisition table, its declared size checked against the limits before reading."""
    d = _dataset(g, "data", path, "acquisitions")
    if d.dtype.names is None or not {"head", "data"} <= set(d.dtype.names):
        raise InputError(f"{path}: '{d.name.lstrip('/')}' is not an ISMRMRD acquisition table "
                         f"(dtype {one_line(d.dtype, 120)})")
    if d.ndim != 1:
        raise InputError(f"{path}: '{d.name.lstrip('/')}' has shape {d.shape}; an acquisition table is 1-D")
    if d.shape[0] > MAX_ACQUISITIONS or d.shape[0] * d.dtype.itemsize > MAX_TABLE_BYTES:
        raise InputError(f"{path}: {d.shape[0]} acquisitions of {d.dtype.itemsize} bytes declared, more than "
                         f"the supported {MAX_ACQUISITIONS} / {MAX_TABLE_BYTES} bytes")
    check_vlen_heaps(d, path)
    return d[()]


def _headers(table: np.ndarray, path: Path) -> np.ndarray:
    """The ``head`` column as :data:`ACQ_HEADER_DTYPE` (same field names, any compatible types)."""
    head = table["head"]
    if head.dtype == ACQ_HEADER_DTYPE:
        return head.copy()
    if head.dtype.names != ACQ_HEADER_DTYPE.names:
        raise InputError(f"{path}: acquisition headers have fields {_names(head.dtype.names or ())}, not "
                         "those of an ISMRMRD AcquisitionHeader")
    try:
        return head.astype(ACQ_HEADER_DTYPE)
    except (TypeError, ValueError) as exc:
        raise InputError(one_line(f"{path}: acquisition headers of an unusable type ({exc})")) from None


def _data_arrays(table: np.ndarray, headers: np.ndarray, path: Path) -> list[np.ndarray]:
    """Each acquisition's samples as complex64 ``[c, samples]``, sized as its header says."""
    data = []
    for i, h in enumerate(headers):
        try:
            raw = np.asarray(table[i]["data"], dtype=np.float32).ravel()
        except (TypeError, ValueError):
            raise InputError(f"{path}: acquisition {i} data are not numbers "
                             f"(dtype {one_line(table.dtype['data'], 80)})") from None
        n_c, n_s = int(h["active_channels"]), int(h["number_of_samples"])
        if raw.size != 2 * n_c * n_s:
            raise InputError(
                f"{path}: acquisition {i} stores {raw.size / 2:g} complex samples, header says "
                f"{n_c} channels x {n_s} samples"
            )
        data.append(raw.view(np.complex64).reshape(n_c, n_s))
    return data


def read_acquisitions(path: str | Path, group: str | None = None):
    """Header XML, headers ``[n]`` and data of every acquisition of a file.

    Returns ``(group, xml_bytes, headers, data)``; ``data`` is a list of complex64
    ``[c, samples]``. Declared sizes are checked before anything is read
    (:mod:`recon.io.limits`); a damaged file raises :class:`InputError`. Threads of one
    process read one file at a time (:data:`recon.io.h5guard.HDF5_LOCK`).
    """
    path = Path(path)
    with HDF5_LOCK, _open(path) as f, _unreadable_as_input_error(path, "the acquisitions"):
        group = _find_group(f, path, group)
        g = f[group]
        xml = _read_xml(g, path)
        table = _read_table(g, path)
    headers = _headers(table, path)
    data = _data_arrays(table, headers, path)
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
        missing frames, NaN/Inf samples) and name them in ``RawFile.slice_errors``
        instead of raising.

    Raises
    ------
    InputError : naming what is wrong (not HDF5, damaged, no header, non-Cartesian,
        sizes beyond :mod:`recon.io.limits`, only a noise scan, no calibration lines,
        inconsistent coils, indices outside the limits, NaN/Inf samples...).
    """
    path = Path(path)
    group, xml, headers, data = read_acquisitions(path, group)
    header = parse_header(xml, source=str(path))
    enc = encoding_info(header, source=str(path))
    keep, noise = split_noise(headers, data, source=str(path))
    _check_something_to_reconstruct(headers, keep, path)
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


def _check_something_to_reconstruct(headers: np.ndarray, keep: np.ndarray, path: Path) -> None:
    """At least one imaging or calibration acquisition; else say what the file holds."""
    if len(keep):
        return
    n_noise = int(is_noise(headers["flags"]).sum())
    if not len(headers):
        raise InputError(f"{path}: the file holds no acquisitions")
    if n_noise == len(headers):
        raise InputError(f"{path}: the file holds only a noise scan ({n_noise} noise acquisitions), no imaging "
                         "or calibration lines: nothing to reconstruct")
    raise InputError(f"{path}: no imaging or calibration lines ({n_noise} noise, "
                     f"{len(headers) - n_noise} auxiliary acquisitions such as navigators): nothing to reconstruct")


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


def read_ground_truth(path: str | Path, slice_number: int, frames: int, group: str | None = None) -> np.ndarray | None:
    """The fully sampled, noise-free reference of a slice, complex ``[frames, y, x]``, or None.

    ``ground_truth`` when the file has it (this project's simulator and converters). Else, from
    the ISMRMRD tool's ``phantom`` ``[y, x]`` and true maps ``csm`` ``[c, y, x]``: what a SENSE
    combination with unit-norm maps gives of its noise-free coil images ``csm * phantom``, i.e.
    ``phantom * sqrt(sum_c |csm_c|^2)`` (the tool's maps are not unit-norm, so the phantom alone
    would score every method's correct intensity weighting as error), the same in every frame
    (the tool's object does not move between repetitions).
    """
    truth = read_reference(path, "ground_truth", slice_number, group)
    if truth is not None:
        return truth
    phantom = read_reference(path, "phantom", slice_number, group)
    csm = read_reference(path, "csm", slice_number, group)
    if phantom is None or csm is None:
        return None
    phantom = np.asarray(phantom).reshape(np.shape(phantom)[-2:])
    csm = np.asarray(csm)
    if csm.ndim != 3 or csm.shape[-2:] != phantom.shape:
        raise InputError(f"{path}: phantom {phantom.shape} and csm {csm.shape} of slice {slice_number} "
                         "do not share one image grid [y, x]")
    image = (phantom * np.sqrt((np.abs(csm) ** 2).sum(axis=0))).astype(np.complex64)
    return np.broadcast_to(image, (frames, *image.shape)).copy()
