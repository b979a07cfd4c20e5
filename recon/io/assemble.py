"""ISMRMRD acquisitions -> per-slice arrays: the reader side of the line layout.

:func:`assemble_slices` takes any Cartesian ISMRMRD stream (ours, written by
:mod:`recon.io.acquisitions`; ``ismrmrd_generate_cartesian_shepp_logan``'s; a
Gadgetron bucket's): it checks every header against the encoding limits and returns
one :class:`SliceData` per slice. :func:`split_noise` first separates the noise scan
and auxiliary lines from the imaging and calibration acquisitions.

Headers travel as NumPy structured arrays of :data:`recon.slicedata.ACQ_HEADER_DTYPE`
(the HDF5 layout), data as a list of complex64 ``[c, samples]`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ismrmrd.xsd as xsd

from recon.errors import InputError
from recon.io import flags as F
from recon.io.limits import MAX_SAMPLE_MAGNITUDE, bad_sample_arrays, check_coils, check_slice_samples, short_list
from recon.slicedata import EncodingInfo, Limit, SliceData

FRAME_DIMS = ("phase", "repetition")

#: ``SliceData.extra`` key naming where the calibration lines came from (see :func:`assemble_slices`).
CALIBRATION_KEY = "calibration"
#: Lines of the fully sampled centre used as calibration when no line is flagged
#: (the ACS size of this project and ESPIRiT's default calibration region).
CENTRE_CALIBRATION_LINES = 24


def _check_limit(values: np.ndarray, limit: Limit, name: str, where: np.ndarray, source: str):
    bad = (values < limit.minimum) | (values > limit.maximum)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: acquisition {int(where[i])} has {name} = {int(values[i])}, outside "
            f"encodingLimits [{limit.minimum}, {limit.maximum}]"
        )


def choose_frame_dim(headers: np.ndarray, frame_dim: str = "auto", source: str = "data") -> str:
    """The counter that indexes frames: ``phase`` (cine), else ``repetition``.

    ``auto`` picks the counter that varies; both varying is ambiguous and an error.
    """
    if frame_dim != "auto":
        if frame_dim not in FRAME_DIMS:
            raise InputError(f"frame dimension must be one of {FRAME_DIMS} or 'auto', got '{frame_dim}'")
        return frame_dim
    varies = [d for d in FRAME_DIMS if len(headers) and np.ptp(headers["idx"][d]) > 0]
    if len(varies) > 1:
        raise InputError(
            f"{source}: both idx.phase and idx.repetition vary; choose the frame dimension explicitly"
        )
    return varies[0] if varies else "phase"


def assemble_slices(
    headers: np.ndarray,
    data: list[np.ndarray],
    encoding: EncodingInfo,
    header: xsd.ismrmrdHeader | None = None,
    frame_dim: str = "auto",
    source: str = "data",
    acq_numbers: np.ndarray | None = None,
    slice_errors: dict[int, str] | None = None,
) -> list[SliceData]:
    """Group imaging/calibration acquisitions by slice and place them on the grid.

    Parameters
    ----------
    headers : ``ACQ_HEADER_DTYPE [n]``; noise and auxiliary acquisitions must be
        removed already (see :func:`split_noise`).
    data : n complex64 arrays ``[c, samples]``.
    encoding : limits and matrix sizes every header is checked against.
    frame_dim : ``"phase"``, ``"repetition"`` or ``"auto"``.
    source : name used in error messages (file name, "bucket", ...).
    acq_numbers : position of each acquisition in its source, for error messages.
    slice_errors : if given, a slice whose own data is bad (no calibration lines,
        frames missing, NaN/Inf or overflowing samples) is left out and its error
        stored here by slice index, so the other slices can still be reconstructed;
        otherwise it raises.

    Calibration lines are the acquisitions flagged ``ACQ_IS_PARALLEL_CALIBRATION``
    or ``..._AND_IMAGING``. A slice without any such flag whose data are fully
    sampled (every frame holds the same one contiguous run of lines around the
    k-space centre, e.g. full or partial-Fourier data) is calibrated from its
    central :data:`CENTRE_CALIBRATION_LINES` lines instead;
    ``SliceData.extra[CALIBRATION_KEY]`` says which (``"flagged"`` or
    ``"fully sampled centre"``).

    Every sample is checked: NaN, Inf or values beyond
    :data:`recon.io.limits.MAX_SAMPLE_MAGNITUDE` make the slice bad, naming the
    acquisitions. The k-space of one slice must fit
    :data:`recon.io.limits.MAX_SAMPLES_PER_SLICE`; this is checked before anything
    is allocated.

    Returns
    -------
    One :class:`SliceData` per distinct ``idx.slice``, in ascending order.

    Raises
    ------
    InputError : inconsistent coil counts, indices outside ``encodingLimits``,
        readouts that do not fit the encoded matrix, sizes beyond the limits, a
        slice without calibration lines or with bad samples, or no acquisitions at all.
    """
    n = len(headers)
    if n == 0:
        raise InputError(f"{source}: no imaging acquisitions")
    if len(data) != n:
        raise InputError(f"{source}: {n} headers but {len(data)} data arrays")
    where = np.arange(n) if acq_numbers is None else np.asarray(acq_numbers)
    n_c = _coil_count(headers, data, encoding, where, source)
    idx = headers["idx"]
    ky_values = idx["kspace_encode_step_1"].astype(np.int64)
    _check_limit(ky_values, encoding.ky, "kspace_encode_step_1", where, source)
    n_ky = encoding.encoded_matrix[1]
    if ky_values.max() >= n_ky:
        i = int(np.argmax(ky_values))
        raise InputError(
            f"{source}: acquisition {int(where[i])} has kspace_encode_step_1 = {ky_values[i]}, beyond "
            f"the encoded matrix ({n_ky} lines)"
        )
    _check_limit(idx["slice"].astype(np.int64), encoding.slice, "slice", where, source)
    fdim = choose_frame_dim(headers, frame_dim, source)
    limit = encoding.phase if fdim == "phase" else encoding.repetition
    frames = idx[fdim].astype(np.int64)
    _check_limit(frames, limit, fdim, where, source)
    n_samples = headers["number_of_samples"].astype(np.int64)
    n_kx = _readout_size(n_samples, encoding, source)
    offsets = np.where(
        n_samples == n_kx, 0, n_kx // 2 - headers["center_sample"].astype(np.int64)
    )
    bad = (offsets < 0) | (offsets + n_samples > n_kx)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: acquisition {int(where[i])} readout ({n_samples[i]} samples, centre "
            f"{int(headers['center_sample'][i])}) does not fit the {n_kx}-sample encoded readout"
        )
    n_t = int(limit.maximum + 1) if limit.maximum > 0 else int(frames.max() + 1)
    n_t = max(n_t, int(frames.max() + 1))
    rx, ry = encoding.recon_matrix[0], encoding.recon_matrix[1]
    check_slice_samples(n_t, n_c, max(n_ky, ry), max(n_kx, rx), source)  # the encoded and the recon grid
    grid = _Grid(headers, data, encoding, header, fdim, frames, ky_values, offsets, n_samples,
                 n_t, n_c, n_ky, n_kx, where, source)

    slices = []
    for s in np.unique(idx["slice"]):
        sel = np.flatnonzero(idx["slice"] == s)
        try:
            slices.append(_assemble_one(grid, int(s), sel))
        except InputError as exc:
            if slice_errors is None:
                raise
            slice_errors[int(s)] = str(exc)
    if not slices and slice_errors:
        first = next(iter(slice_errors.values()))
        raise InputError(f"{source}: no slice could be assembled ({len(slice_errors)} bad; first: {first})")
    return slices


def _coil_count(headers: np.ndarray, data: list[np.ndarray], encoding: EncodingInfo, where: np.ndarray,
                source: str) -> int:
    """The one coil count of every acquisition, checked against the header and each data array."""
    channels = headers["active_channels"].astype(np.int64)
    if np.any(channels != channels[0]):
        i = int(np.flatnonzero(channels != channels[0])[0])
        raise InputError(
            f"{source}: inconsistent coil counts: acquisition {int(where[i])} has {channels[i]} "
            f"channels, acquisition {int(where[0])} has {channels[0]}"
        )
    n_c = int(channels[0])
    if n_c < 1:
        raise InputError(f"{source}: acquisitions have no active channels")
    check_coils(n_c, source)
    if encoding.receiver_channels is not None and encoding.receiver_channels != n_c:
        raise InputError(
            f"{source}: inconsistent coil counts: header says receiverChannels = "
            f"{encoding.receiver_channels}, acquisitions carry {n_c}"
        )
    for i, (h, d) in enumerate(zip(headers, data)):
        if np.shape(d) != (n_c, int(h["number_of_samples"])):
            raise InputError(
                f"{source}: acquisition {int(where[i])} data shape {np.shape(d)} does not match its header "
                f"({n_c} channels x {int(h['number_of_samples'])} samples)"
            )
    return n_c


@dataclass(frozen=True)
class _Grid:
    """What :func:`assemble_slices` established for the whole stream, shared by every slice."""

    headers: np.ndarray
    data: list
    encoding: EncodingInfo
    header: xsd.ismrmrdHeader | None
    fdim: str
    frames: np.ndarray
    ky_values: np.ndarray
    offsets: np.ndarray
    n_samples: np.ndarray
    n_t: int
    n_c: int
    n_ky: int
    n_kx: int
    where: np.ndarray
    source: str


def _check_samples(g: _Grid, s: int, sel: np.ndarray) -> None:
    """Every sample of the slice's acquisitions is finite and within ``MAX_SAMPLE_MAGNITUDE``."""
    non_finite, too_large = bad_sample_arrays(g.data[i] for i in sel)
    problems = []
    if non_finite:
        problems.append(f"acquisition(s) {short_list(g.where[sel[non_finite]])} hold NaN or infinite samples")
    if too_large:
        problems.append(f"acquisition(s) {short_list(g.where[sel[too_large]])} hold samples beyond "
                        f"+-{MAX_SAMPLE_MAGNITUDE:.0e} (overflow)")
    if problems:
        raise InputError(f"{g.source}: slice {s}: " + "; ".join(problems))


def _assemble_one(g: _Grid, s: int, sel: np.ndarray) -> SliceData:
    """One slice of :func:`assemble_slices` (all checks common to the stream are done)."""
    _check_samples(g, s, sel)
    fl = g.headers["flags"][sel]
    calib, imaging, reverse = F.is_calibration(fl), F.is_imaging(fl), F.has(fl, F.REVERSE)
    acs_lines = np.unique(g.ky_values[sel][calib])
    acs_pos = {int(k): j for j, k in enumerate(acs_lines)}
    kspace = np.zeros((g.n_t, g.n_c, g.n_ky, g.n_kx), dtype=np.complex64)
    counts = np.zeros((g.n_t, g.n_ky), dtype=np.int32)
    acs = np.zeros((g.n_t, g.n_c, len(acs_lines), g.n_kx), dtype=np.complex64)
    acs_counts = np.zeros((g.n_t, len(acs_lines)), dtype=np.int32)
    best = np.full(g.n_t, -1, dtype=np.int64)
    best_dist = np.full(g.n_t, np.iinfo(np.int64).max)
    for j, i in enumerate(sel):
        t, ky, o, ns = int(g.frames[i]), int(g.ky_values[i]), int(g.offsets[i]), int(g.n_samples[i])
        line = np.zeros((g.n_c, g.n_kx), dtype=np.complex64)
        d = g.data[i]
        line[:, o:o + ns] = d[:, ::-1] if reverse[j] else d
        if imaging[j]:
            kspace[t, :, ky] += line
            counts[t, ky] += 1
        if calib[j]:
            acs[t, :, acs_pos[ky]] += line
            acs_counts[t, acs_pos[ky]] += 1
        dist = abs(ky - g.encoding.ky.center)
        if dist < best_dist[t]:
            best[t], best_dist[t] = i, dist
    if (best < 0).any():
        raise InputError(f"{g.source}: slice {s} has no acquisitions for {g.fdim} "
                         f"{short_list(np.flatnonzero(best < 0))} (of {g.n_t} frames declared)")
    _mean_of_repeats(kspace, counts)
    _mean_of_repeats(acs, acs_counts)
    mask = counts > 0
    origin = "flagged"
    if not len(acs_lines):
        acs_lines, acs = _centre_calibration(kspace, mask, g.encoding.ky.center, s, g.source)
        acs_counts = np.ones((g.n_t, len(acs_lines)), dtype=np.int32)
        origin = "fully sampled centre"
    return SliceData(
        kspace=kspace,
        mask=mask,
        acs=acs,
        acs_lines=acs_lines.astype(np.int64),
        acs_mask=acs_counts > 0,
        acq_headers=g.headers[sel].copy(),
        frame_headers=g.headers[best].copy(),
        encoding=g.encoding,
        header=g.header,
        slice_index=s,
        frame_dim=g.fdim,
        extra={CALIBRATION_KEY: origin},
    )


def _mean_of_repeats(lines: np.ndarray, counts: np.ndarray) -> None:
    """Averages: lines ``[t, c, n, kx]`` acquired ``counts [t, n] > 1`` times become their mean, in place."""
    repeated = counts > 1
    if repeated.any():
        t, n = repeated.nonzero()
        lines[t, :, n] /= counts[repeated][:, None, None]


def _centre_calibration(kspace: np.ndarray, mask: np.ndarray, centre: int, s: int, source: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Calibration lines ``(ky [n], lines [t, c, n, kx])`` of a slice none of whose lines is flagged.

    Only fully sampled data qualify: every frame holds the same single contiguous run
    of lines, and it contains the k-space centre (full or partial-Fourier sampling).
    Its central :data:`CENTRE_CALIBRATION_LINES` lines are used. Undersampled data
    without flagged calibration lines raise :class:`InputError`.
    """
    n_ky = mask.shape[1]
    centre = centre if 0 <= centre < n_ky else n_ky // 2
    every, some = mask.all(axis=0), mask.any(axis=0)
    lines = np.flatnonzero(every)
    contiguous = len(lines) > 0 and lines[-1] - lines[0] + 1 == len(lines)
    if not (contiguous and every[centre] and np.array_equal(every, some)):
        raise InputError(
            f"{source}: slice {s} has no calibration lines (no acquisition flagged "
            f"ACQ_IS_PARALLEL_CALIBRATION or ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING, and the data are "
            f"not fully sampled around the k-space centre line {centre}, so no block can stand in)"
        )
    n = min(CENTRE_CALIBRATION_LINES, len(lines))
    start = int(np.clip(centre - n // 2, lines[0], lines[-1] + 1 - n))
    chosen = np.arange(start, start + n, dtype=np.int64)
    return chosen, np.ascontiguousarray(kspace[:, :, chosen])


def _readout_size(n_samples: np.ndarray, encoding: EncodingInfo, source: str) -> int:
    """Readout length of the grid: encoded x, or recon x if oversampling was removed upstream."""
    enc_x, rec_x = encoding.encoded_matrix[0], encoding.recon_matrix[0]
    if np.all(n_samples == rec_x) and enc_x != rec_x:
        return rec_x
    if n_samples.max() > enc_x:
        raise InputError(
            f"{source}: readouts have up to {int(n_samples.max())} samples, more than the encoded "
            f"matrix x = {enc_x}"
        )
    return enc_x


def split_noise(headers: np.ndarray, data: list[np.ndarray], source: str = "data"):
    """Separate noise scans and auxiliary lines from imaging/calibration acquisitions.

    Returns ``(keep_index, noise)``: indices of the acquisitions to assemble and the
    noise samples as complex64 ``[c, n]`` (``None`` when there is no noise scan).
    """
    fl = headers["flags"]
    noise_sel = np.flatnonzero(F.is_noise(fl))
    keep = np.flatnonzero(~F.is_noise(fl) & ~F.has(fl, F.NON_IMAGING))
    noise = None
    if len(noise_sel):
        coils = {np.shape(data[i])[0] for i in noise_sel}
        if len(coils) > 1:
            raise InputError(f"{source}: noise scan acquisitions have different coil counts ({short_list(coils)})")
        noise = np.concatenate([np.asarray(data[i], dtype=np.complex64) for i in noise_sel], axis=1)
    return keep, noise
