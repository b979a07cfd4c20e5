"""AcquisitionBucket (Gadgetron message 1050): write it, read it safely, turn it into a SliceData.

Wire format, as Gadgetron's C++ ``AcquisitionBucketWriter`` sends it: message id
1050 (uint16), then 13 uint64 sizes —

* data bundle: count, header bytes, data bytes, trajectory bytes
* reference bundle: the same four
* data stats bytes, reference stats bytes
* waveforms: count, header bytes, data bytes

— then for the data bundle: all acquisition headers, all trajectories, all
sample data, the stats; the same for the reference bundle; then the waveform
headers and data. Stats are a uint64 count of entries, each nine uint16 sets
(kspace_encode_step_1, kspace_encode_step_2, slice, phase, contrast, repetition,
set, segment, average), each set a uint64 length and its values.

The ``gadgetron`` package (1.4.1) can read buckets but not write them, and its
reader raises AttributeError on buckets that carry waveforms (it calls
``ismrmrd.Waveform.from_buffer_copy``); :func:`read_bucket` here reads the same
format, waveforms included, into writable arrays.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, field

import ismrmrd
import numpy as np

from recon.errors import InputError
from recon.io import flags as F
from recon.io.assemble import assemble_slices
from recon.slicedata import ACQ_HEADER_DTYPE, EncodingInfo, SliceData

MESSAGE_BUCKET = 1050
_U64 = struct.Struct("<Q")
_META = struct.Struct("<13Q")
_WAVEFORM_HEADER_SIZE = ctypes.sizeof(ismrmrd.WaveformHeader)
STAT_FIELDS = ("kspace_encode_step_1", "kspace_encode_step_2", "slice", "phase", "contrast",
               "repetition", "set", "segment", "average")


@dataclass
class Bucket:
    """One bucket: ``data`` and ``ref`` acquisitions and waveforms (writable copies)."""

    data: list[ismrmrd.Acquisition]
    ref: list[ismrmrd.Acquisition]
    waveforms: list[ismrmrd.Waveform] = field(default_factory=list)
    data_stats: list[dict[str, set[int]]] = field(default_factory=list)
    ref_stats: list[dict[str, set[int]]] = field(default_factory=list)


def _stats(acqs: list[ismrmrd.Acquisition]) -> list[dict[str, set[int]]]:
    if not acqs:
        return []
    return [{f: {int(getattr(a.idx, f)) for a in acqs} for f in STAT_FIELDS}]


def _pack_stats(stats: list[dict[str, set[int]]]) -> bytes:
    out = [_U64.pack(len(stats))]
    for entry in stats:
        for f in STAT_FIELDS:
            values = sorted(entry.get(f, ()))
            out.append(_U64.pack(len(values)))
            out.append(np.asarray(values, dtype="<u2").tobytes())
    return b"".join(out)


def _bundle(acqs: list[ismrmrd.Acquisition], stats) -> tuple[tuple[int, int, int, int], list[bytes]]:
    headers = b"".join(bytes(a.getHead()) for a in acqs)
    trajs = b"".join(np.ascontiguousarray(a.traj, dtype=np.float32).tobytes()
                     for a in acqs if a.trajectory_dimensions > 0)
    data = b"".join(np.ascontiguousarray(a.data, dtype=np.complex64).tobytes() for a in acqs)
    st = _pack_stats(stats)
    return (len(acqs), len(headers), len(data), len(trajs)), [headers, trajs, data, st]


def bucket_message(bucket: Bucket, with_id: bool = True) -> bytes:
    """Serialise a bucket as Gadgetron does (message id first unless ``with_id=False``)."""
    d_meta, d_parts = _bundle(bucket.data, bucket.data_stats or _stats(bucket.data))
    r_meta, r_parts = _bundle(bucket.ref, bucket.ref_stats or _stats(bucket.ref))
    w_head = b"".join(bytes(w.getHead()) for w in bucket.waveforms)
    w_data = b"".join(np.ascontiguousarray(w.data, dtype=np.uint32).tobytes() for w in bucket.waveforms)
    meta = _META.pack(*d_meta, *r_meta, len(d_parts[3]), len(r_parts[3]),
                      len(bucket.waveforms), len(w_head), len(w_data))
    prefix = struct.pack("<H", MESSAGE_BUCKET) if with_id else b""
    return b"".join([prefix, meta, *d_parts, *r_parts, w_head, w_data])


class _Reader:
    def __init__(self, read):
        self._read = read

    def exactly(self, n: int) -> bytes:
        if n == 0:
            return b""
        b = self._read(n)
        if len(b) != n:
            raise InputError(f"bucket truncated: wanted {n} bytes, got {len(b)}")
        return b


def _read_acqs(r: _Reader, count: int, header_bytes: int, data_bytes: int, traj_bytes: int):
    hsize = ctypes.sizeof(ismrmrd.AcquisitionHeader)
    if header_bytes != count * hsize:
        raise InputError(f"bucket: {count} acquisitions but {header_bytes} header bytes")
    raw = r.exactly(header_bytes)
    heads = [ismrmrd.AcquisitionHeader.from_buffer_copy(raw[i * hsize:(i + 1) * hsize]) for i in range(count)]
    expect_t = sum(4 * h.number_of_samples * h.trajectory_dimensions for h in heads)
    expect_d = sum(8 * h.number_of_samples * h.active_channels for h in heads)
    if expect_t != traj_bytes or expect_d != data_bytes:
        raise InputError(f"bucket: sizes in the meta block ({data_bytes} data, {traj_bytes} trajectory "
                         f"bytes) disagree with the headers ({expect_d}, {expect_t})")
    trajs = []
    for h in heads:
        n = h.number_of_samples * h.trajectory_dimensions
        trajs.append(np.frombuffer(r.exactly(4 * n), np.float32).reshape(h.number_of_samples,
                                                                         h.trajectory_dimensions).copy()
                     if n else None)
    acqs = []
    for h, t in zip(heads, trajs):
        d = np.frombuffer(r.exactly(8 * h.number_of_samples * h.active_channels), np.complex64)
        acqs.append(ismrmrd.Acquisition(h, d.reshape(h.active_channels, h.number_of_samples).copy(), t))
    return acqs


def _read_stats(r: _Reader, nbytes: int):
    raw = r.exactly(nbytes)
    pos = 0

    def u64():
        nonlocal pos
        if pos + 8 > len(raw):
            raise InputError("bucket: stats block truncated")
        v = _U64.unpack_from(raw, pos)[0]
        pos += 8
        return v

    out = []
    for _ in range(u64() if nbytes else 0):
        entry = {}
        for f in STAT_FIELDS:
            n = u64()
            entry[f] = set(np.frombuffer(raw[pos:pos + 2 * n], "<u2").tolist())
            pos += 2 * n
        out.append(entry)
    return out


def read_bucket(read) -> Bucket:
    """Read one bucket (after its message id) with ``read(n) -> bytes``."""
    r = _Reader(read)
    m = _META.unpack(r.exactly(_META.size))
    data = _read_acqs(r, m[0], m[1], m[2], m[3])
    data_stats = _read_stats(r, m[8])
    ref = _read_acqs(r, m[4], m[5], m[6], m[7])
    ref_stats = _read_stats(r, m[9])
    n_w, w_hbytes, w_dbytes = m[10], m[11], m[12]
    if w_hbytes != n_w * _WAVEFORM_HEADER_SIZE:
        raise InputError(f"bucket: {n_w} waveforms but {w_hbytes} header bytes")
    raw_h = r.exactly(w_hbytes)
    heads = [ismrmrd.WaveformHeader.from_buffer_copy(raw_h[i * _WAVEFORM_HEADER_SIZE:(i + 1) *
                                                           _WAVEFORM_HEADER_SIZE]) for i in range(n_w)]
    if sum(4 * h.channels * h.number_of_samples for h in heads) != w_dbytes:
        raise InputError("bucket: waveform data size disagrees with the waveform headers")
    waveforms = []
    for h in heads:
        d = np.frombuffer(r.exactly(4 * h.channels * h.number_of_samples), np.uint32)
        waveforms.append(ismrmrd.Waveform(h, d.reshape(h.channels, h.number_of_samples).copy()))
    return Bucket(data, ref, waveforms, data_stats, ref_stats)


def split_for_bucket(acqs: list[ismrmrd.Acquisition]) -> Bucket:
    """Sort acquisitions as Gadgetron's AcquisitionAccumulateTriggerGadget does.

    Lines flagged ``ACQ_IS_PARALLEL_CALIBRATION`` go to ``ref``; lines flagged
    ``..._AND_IMAGING`` go to both ``ref`` and ``data``; the others to ``data``.
    Noise and auxiliary acquisitions are not part of buckets and are dropped.
    """
    data, ref = [], []
    for a in acqs:
        fl = np.uint64(a.flags)
        if F.has(fl, F.NOISE | F.NON_IMAGING):
            continue
        if F.has(fl, F.CALIBRATION | F.CALIBRATION_AND_IMAGING):
            ref.append(a)
        if not F.has(fl, F.CALIBRATION):
            data.append(a)
    return Bucket(data, ref)


def acquisitions_to_arrays(acqs: list[ismrmrd.Acquisition]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Structured headers ``[n]`` (ACQ_HEADER_DTYPE) and data arrays of acquisitions."""
    headers = np.frombuffer(b"".join(bytes(a.getHead()) for a in acqs), dtype=ACQ_HEADER_DTYPE).copy() \
        if acqs else np.zeros(0, ACQ_HEADER_DTYPE)
    return headers, [np.array(a.data, dtype=np.complex64, copy=True) for a in acqs]


def arrays_to_acquisitions(headers: np.ndarray, data: list[np.ndarray], copy: bool = True
                           ) -> list[ismrmrd.Acquisition]:
    """ISMRMRD acquisitions from structured headers ``[n]`` and data arrays (inverse of the above)."""
    return [ismrmrd.Acquisition(ismrmrd.AcquisitionHeader.from_buffer_copy(h.tobytes()),
                                np.array(d, dtype=np.complex64, copy=True) if copy else d)
            for h, d in zip(headers, data)]


def bucket_to_slice(bucket: Bucket, encoding: EncodingInfo, header=None, frame_dim: str = "auto") -> SliceData:
    """Assemble the one slice a bucket holds (Gadgetron triggers a bucket per slice).

    ``data`` and ``ref`` are merged; a line that arrives in both (flagged
    ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``) is counted once. A bucket that
    spans several slices is an error naming them.
    """
    seen = {(a.scan_counter, a.idx.kspace_encode_step_1, a.idx.phase, a.idx.repetition) for a in bucket.data}
    extra = [a for a in bucket.ref
             if (a.scan_counter, a.idx.kspace_encode_step_1, a.idx.phase, a.idx.repetition) not in seen]
    headers, data = acquisitions_to_arrays(list(bucket.data) + extra)
    slices = assemble_slices(headers, data, encoding, header=header, frame_dim=frame_dim, source="bucket")
    if len(slices) != 1:
        raise InputError(f"bucket holds {len(slices)} slices {[s.slice_index for s in slices]}; "
                         "the chain must trigger on slice (AcquisitionAccumulateTriggerGadget)")
    return slices[0]
