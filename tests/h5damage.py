"""Damages done to an ISMRMRD file's HDF5 datasets, shared by the reader and bad-input tests.

Each returns ``damage(f)``, a function of an open ``h5py.File`` in append mode.
"""

from __future__ import annotations


def replace_dataset(name: str, **spec):
    """``dataset/<name>`` replaced by ``create_dataset(**spec)`` (a group when none given)."""
    def damage(f):
        del f[f"dataset/{name}"]
        if spec:
            f.create_dataset(f"dataset/{name}", **spec)
        else:
            f.create_group(f"dataset/{name}")
    return damage


def grown_table(rows: int):
    """The acquisition table declared with ``rows`` rows, only the first written (one chunk of 16)."""
    def damage(f):
        first = f["dataset/data"][0]
        del f["dataset/data"]
        f.create_dataset("dataset/data", shape=(rows,), dtype=first.dtype, chunks=(16,))[0] = first
    return damage
