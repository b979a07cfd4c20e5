"""A guard against libhdf5 hanging on damaged variable-length data.

ISMRMRD keeps each acquisition's samples (and the XML header) as variable-length
values: the dataset stores, per value, a length and a *global heap ID* (collection
address + object index); the samples live in global heap collections ("GCOL"). When
libhdf5 (2.0) loads a collection whose object header reads index 0 and size 0 (a
zeroed block, as a damaged disk or a cut-and-patched file leaves), its parser never
advances and the read spins forever at 100 % CPU: no exception, no timeout.

:func:`check_vlen_heaps` walks, before the dataset is read, every collection its
variable-length values point to, exactly as libhdf5 would, reading only the object
headers (16 bytes each), and raises :class:`~recon.errors.InputError` on a
collection libhdf5 could not walk. Datasets it cannot parse cheaply (filtered
chunks, compact storage, external files) are left to libhdf5.

File format (HDF5 specification, III.E "Global Heap"): a collection is ``"GCOL"``,
version (1 byte), 3 reserved bytes, the collection size (length-size bytes), then
objects, each an index (2), a reference count (2), 4 reserved bytes, a size
(length-size bytes) and the data padded to 8 bytes; index 0 is the free space. A
variable-length value on disk is a 4-byte length and an address (address-size
bytes) plus a 4-byte index.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from recon.errors import InputError

#: Held while a thread reads or writes a whole HDF5 file in a process that does so from
#: several threads (replays run side by side): a crash inside libhdf5 2.0 was seen once
#: with three threads reading the same raw file at once, although h5py serialises its calls.
HDF5_LOCK = threading.RLock()

def _is_vlen(tid) -> bool:
    """A variable-length sequence or a variable-length string."""
    if tid.get_class() == h5py.h5t.VLEN:
        return True
    return tid.get_class() == h5py.h5t.STRING and tid.is_variable_str()


def _vlen_layout(tid, sizeof_addr: int) -> tuple[list[int], int] | None:
    """Disk offsets of the variable-length fields of a dataset's type and its size on disk (None: none).

    ``H5Dget_type`` reports the memory layout; on disk each variable-length value takes
    ``4 + sizeof_addr + 4`` bytes and later members shift by the difference."""
    disk_vlen = 4 + sizeof_addr + 4
    if _is_vlen(tid):
        return [0], disk_vlen
    if tid.get_class() != h5py.h5t.COMPOUND:
        return None
    members = sorted((tid.get_member_offset(i), tid.get_member_type(i)) for i in range(tid.get_nmembers()))
    offsets, shift = [], 0
    for offset, mtype in members:
        if mtype.get_class() == h5py.h5t.COMPOUND and _vlen_layout(mtype, sizeof_addr):
            return None  # nested variable-length data: not parsed here
        if _is_vlen(mtype):
            offsets.append(offset + shift)
            shift += disk_vlen - mtype.get_size()
    return (offsets, tid.get_size() + shift) if offsets else None


def _raw_storage(d: h5py.Dataset, fh) -> Iterator[bytes]:
    """The dataset's raw bytes as stored (contiguous, or unfiltered chunks); nothing for other layouts."""
    plist = d.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = d.id.get_offset()
        if offset is not None:
            fh.seek(offset)
            yield fh.read(d.id.get_storage_size())
    elif layout == h5py.h5d.CHUNKED and plist.get_nfilters() == 0:
        for i in range(d.id.get_num_chunks()):
            info = d.id.get_chunk_info(i)
            fh.seek(info.byte_offset)
            yield fh.read(info.size)


def _heap_addresses(d: h5py.Dataset, fh, sizeof_addr: int) -> set[int]:
    """Collection addresses that the dataset's non-empty variable-length values point to."""
    layout = _vlen_layout(d.id.get_type(), sizeof_addr)
    if layout is None:
        return set()
    offsets, row = layout
    addr_type = np.dtype(f"<u{sizeof_addr}")
    found: set[int] = set()
    for blob in _raw_storage(d, fh):
        rows = np.frombuffer(blob[:len(blob) // row * row], dtype=np.uint8).reshape(-1, row)
        for off in offsets:
            lengths = rows[:, off:off + 4].copy().view("<u4").ravel()
            addrs = rows[:, off + 4:off + 4 + sizeof_addr].copy().view(addr_type).ravel()
            found.update(int(a) for a in np.unique(addrs[lengths > 0]))
    return found


def _walk_collection(fh, addr: int, file_size: int, sizeof_size: int, path: Path) -> None:
    """Walk one global heap collection as libhdf5 does; raise where libhdf5 would loop or read past it."""
    header = 8 + sizeof_size
    fh.seek(addr)
    head = fh.read(header)
    if len(head) < header or head[:4] != b"GCOL":
        raise InputError(f"{path}: damaged file: no global heap collection at byte {addr} "
                         "(variable-length data point there)")
    size = int.from_bytes(head[8:8 + sizeof_size], "little")
    end = addr + size
    if size < header or end > file_size:
        raise InputError(f"{path}: damaged file: global heap collection at byte {addr} declares {size} bytes, "
                         f"beyond the end of the file")
    p = addr + header
    while p < end:
        if p + header > end:
            break  # a tail too small for an object header is free space
        fh.seek(p)
        obj = fh.read(header)
        index = int.from_bytes(obj[0:2], "little")
        obj_size = int.from_bytes(obj[8:8 + sizeof_size], "little")
        need = header + -(-obj_size // 8) * 8 if index > 0 else obj_size
        if need == 0:
            raise InputError(f"{path}: damaged file: global heap collection at byte {addr} has an empty object "
                             f"header at byte {p} (the HDF5 library would loop forever on it)")
        p += need


def check_vlen_heaps(d: h5py.Dataset, path: str | Path) -> None:
    """Refuse, before reading, a dataset whose variable-length values point into damaged global heaps.

    Raises :class:`InputError` naming the byte offset of the damage; does nothing for
    datasets without variable-length values or in layouts it does not parse.
    """
    path = Path(path)
    sizeof_addr, sizeof_size = d.file.id.get_create_plist().get_sizes()
    base = d.file.id.get_create_plist().get_userblock()
    with open(d.file.filename, "rb") as fh:
        fh.seek(0, 2)
        file_size = fh.tell()
        for addr in sorted(_heap_addresses(d, fh, sizeof_addr)):
            _walk_collection(fh, base + addr, file_size, sizeof_size, path)
