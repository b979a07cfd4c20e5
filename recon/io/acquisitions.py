"""Per-slice arrays -> ISMRMRD acquisitions: the writer side of the line layout.

* :func:`slice_to_acquisitions` turns one slice of k-space ``[t, c, ky, kx]`` and its
  line mask into ISMRMRD acquisition headers and data, ordered like a segmented
  cine (heartbeat -> cardiac phase -> lines of the segment), with calibration,
  first/last-in-slice flags, geometry and time stamps.
* :func:`scan_to_acquisitions` strings slices (and a noise scan,
  :func:`noise_acquisitions`) together in scanner order.

The inverse, acquisitions -> one :class:`recon.slicedata.SliceData` per slice, is
:func:`recon.io.assemble.assemble_slices`. Headers travel as NumPy structured arrays
of :data:`ACQ_HEADER_DTYPE` (the HDF5 layout), data as a list of complex64
``[c, samples]`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.errors import InputError
from recon.io import flags as F
from recon.slicedata import ACQ_HEADER_DTYPE, Geometry

#: ISMRMRD time stamps count ticks of 2.5 ms (the convention of Siemens and Gadgetron).
TICK_MS = 2.5


@dataclass(frozen=True)
class CineTiming:
    """Segmented, ECG-triggered cine timing used to stamp acquisitions."""

    rr_ms: float = 1000.0
    tr_ms: float = 3.4
    views_per_segment: int = 8
    start_ms: float = 36_000_000.0  # 10:00:00 after midnight


def slice_to_acquisitions(
    kspace: np.ndarray,
    mask: np.ndarray,
    acs_lines: np.ndarray,
    slice_index: int,
    geometry: Geometry,
    timing: CineTiming = CineTiming(),
    center_sample: int | None = None,
    scan_counter_start: int = 0,
    time_offset_ms: float = 0.0,
    ordering: str = "segmented",
    calibration_only_lines: bool = True,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Acquisitions of one cine slice.

    Parameters
    ----------
    kspace : complex ``[t, c, ky, kx]`` on the encoded grid.
    mask : bool ``[t, ky]``; imaging lines to emit per frame.
    acs_lines : ky indices of the calibration block. Calibration lines that are
        also imaging lines get ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``; those
        not in the frame's mask are emitted as ``ACQ_IS_PARALLEL_CALIBRATION``, unless
        ``calibration_only_lines`` is False (interleaved acquisitions calibrated from the
        time average: a frame flags the calibration lines it images, nothing more).
    slice_index : ``idx.slice`` of every acquisition.
    geometry : position and orientation stamped on every acquisition.
    timing : heartbeat/TR model for ``acquisition_time_stamp`` and
        ``physiology_time_stamp[0]`` (trigger delay), both in 2.5 ms ticks.
    center_sample : readout sample of k-space centre; default ``kx // 2``.
    scan_counter_start, time_offset_ms : continue counters across slices.
    ordering : ``segmented`` (heartbeat -> cardiac phase -> lines of the segment, as a
        segmented cine is acquired) or ``linear`` (line by line: every phase of a ky
        line before the next line, as some converters write). Time stamps are the same.

    Returns
    -------
    headers : ``ACQ_HEADER_DTYPE [n]``; data : list of n complex64 ``[c, kx]``.
    The first acquisition has ``ACQ_FIRST_IN_SLICE``, the last ``ACQ_LAST_IN_SLICE``.
    """
    kspace = np.asarray(kspace)
    mask = np.asarray(mask, dtype=bool)
    n_t, n_c, n_ky, n_kx = kspace.shape
    if mask.shape != (n_t, n_ky):
        raise InputError(f"mask shape {mask.shape} does not match k-space frames/lines {(n_t, n_ky)}")
    acs = np.zeros(n_ky, dtype=bool)
    acs[np.asarray(acs_lines, dtype=np.int64)] = True
    lines_per_frame = [np.flatnonzero(mask[t] | acs if calibration_only_lines else mask[t]) for t in range(n_t)]
    vps = max(1, int(timing.views_per_segment))
    n_beats = max(int(np.ceil(len(lines) / vps)) for lines in lines_per_frame)
    phase_ms = timing.rr_ms / n_t
    order = []  # (beat, frame, position in segment, ky)
    for t, lines in enumerate(lines_per_frame):
        for b, segment in enumerate(np.array_split(lines, n_beats)):
            order.extend((b, t, j, int(ky)) for j, ky in enumerate(segment))
    if ordering == "segmented":
        order.sort()
    elif ordering == "linear":
        order.sort(key=lambda o: (o[3], o[1]))
    else:
        raise InputError(f"ordering must be 'segmented' or 'linear', got {ordering!r}")
    headers = np.zeros(len(order), dtype=ACQ_HEADER_DTYPE)
    data = []
    c_sample = n_kx // 2 if center_sample is None else int(center_sample)
    for n, (b, t, j, ky) in enumerate(order):
        h = headers[n]
        h["version"] = 1
        flag = np.uint64(0)
        if acs[ky]:
            flag |= F.CALIBRATION_AND_IMAGING if mask[t, ky] else F.CALIBRATION
        h["flags"] = flag
        h["scan_counter"] = scan_counter_start + n
        trigger_ms = t * phase_ms + j * timing.tr_ms
        abs_ms = timing.start_ms + time_offset_ms + b * timing.rr_ms + trigger_ms
        h["acquisition_time_stamp"] = int(round(abs_ms / TICK_MS))
        h["physiology_time_stamp"][0] = int(round(trigger_ms / TICK_MS))
        h["number_of_samples"] = n_kx
        h["available_channels"] = n_c
        h["active_channels"] = n_c
        h["center_sample"] = c_sample
        h["sample_time_us"] = 2.5
        h["position"] = geometry.position
        h["read_dir"] = geometry.read_dir
        h["phase_dir"] = geometry.phase_dir
        h["slice_dir"] = geometry.slice_dir
        h["patient_table_position"] = geometry.patient_table_position
        h["idx"]["kspace_encode_step_1"] = ky
        h["idx"]["slice"] = slice_index
        h["idx"]["phase"] = t
        h["idx"]["segment"] = b
        data.append(np.ascontiguousarray(kspace[t, :, ky, :], dtype=np.complex64))
    headers["flags"][0] |= F.FIRST_IN_SLICE
    headers["flags"][-1] |= F.LAST_IN_SLICE
    # channel_mask: the first n_c bits set
    for ch in range(n_c):
        headers["channel_mask"][:, ch // 64] |= np.uint64(1) << np.uint64(ch % 64)
    return headers, data


def scan_to_acquisitions(
    slices: list[tuple[np.ndarray, np.ndarray, Geometry]],
    acs_lines: np.ndarray,
    timing: CineTiming = CineTiming(),
    noise: np.ndarray | None = None,
    beats_between_slices: int = 20,
    ordering: str = "segmented",
    calibration_only_lines: bool = True,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Acquisitions of a multi-slice cine scan, in scanner order.

    ``slices`` holds ``(kspace [t, c, ky, kx], mask [t, ky], geometry)`` per slice
    (slice index = position in the list), lines in ``ordering`` and calibration lines as
    ``calibration_only_lines`` says (see :func:`slice_to_acquisitions`). The noise scan ``[c, n]`` comes first when
    given; slices follow one another, ``beats_between_slices`` heartbeats apart (a
    breath-hold each); the last acquisition is flagged ``ACQ_LAST_IN_MEASUREMENT``.
    """
    heads, data = [], []
    if noise is not None:
        nh, nd = noise_acquisitions(noise)
        heads.append(nh)
        data += nd
    counter = 0
    for z, (kspace, mask, geometry) in enumerate(slices):
        h, d = slice_to_acquisitions(
            kspace, mask, acs_lines, z, geometry, timing, scan_counter_start=counter,
            time_offset_ms=z * beats_between_slices * timing.rr_ms, ordering=ordering,
            calibration_only_lines=calibration_only_lines,
        )
        counter += len(h)
        heads.append(h)
        data += d
    headers = np.concatenate(heads)
    headers["flags"][-1] |= F.LAST_IN_MEASUREMENT
    return headers, data


def noise_acquisitions(noise: np.ndarray, samples_per_line: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    """Noise-scan acquisitions (``ACQ_IS_NOISE_MEASUREMENT``) from noise ``[c, n]``."""
    noise = np.asarray(noise, dtype=np.complex64)
    n_c, n = noise.shape
    n_lines = max(1, n // samples_per_line)
    headers = np.zeros(n_lines, dtype=ACQ_HEADER_DTYPE)
    data = []
    for i in range(n_lines):
        headers[i]["version"] = 1
        headers[i]["flags"] = F.NOISE
        headers[i]["scan_counter"] = i
        headers[i]["number_of_samples"] = samples_per_line
        headers[i]["available_channels"] = n_c
        headers[i]["active_channels"] = n_c
        headers[i]["sample_time_us"] = 2.5
        data.append(np.ascontiguousarray(noise[:, i * samples_per_line:(i + 1) * samples_per_line]))
    return headers, data
