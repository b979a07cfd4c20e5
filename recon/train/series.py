"""The real cine series used for training and validation: the patient split and the pool
of their slices.

:func:`split_series` divides the ``.npz`` cine series (``cine`` arrays, see
:mod:`recon.simulate.realdata`; ``data.data_dir`` or the default data folder) into the
training patients and the held-out ``data.holdout`` patients, per ``data.images``
(``phantom``: none, ``real``: at least one required, else whatever is there).
:class:`SeriesPool` holds the slices of one side of the split; a sample source draws
a slice index from it with its own generator (:mod:`recon.train.data`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.simulate.realdata import default_data_dir, list_series
from recon.train.config import DataConfig


def _npz_array_shape(path: Path, name: str) -> tuple[int, ...]:
    """Shape of array ``name`` in an ``.npz`` archive, read from its header only."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(f)
    except KeyError:
        raise InputError(f"{path}: no array {name!r}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None
    return tuple(shape)


class SeriesPool:
    """The slices of real cine series files (``cine`` arrays, see :mod:`recon.simulate.realdata`).

    entries : ``(path, slice_index)`` for every slice (``None`` for a 3-D series).
    A file is read once, on first use of one of its slices, and kept in memory as
    stored (int16: ~130 MB for ``shared/data``); :meth:`preload` reads all of them
    (before DataLoader workers fork, so they share the arrays).
    """

    def __init__(self, files: list[Path]):
        self.entries: list[tuple[Path, int | None]] = []
        for f in files:
            shape = _npz_array_shape(f, "cine")
            if len(shape) == 4:
                self.entries += [(f, i) for i in range(shape[0])]
            elif len(shape) == 3:
                self.entries.append((f, None))
            else:
                raise InputError(f"{f}: 'cine' has shape {shape}; expected (slices, phases, H, W) or (phases, H, W)")
        self._arrays: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _array(self, path: Path) -> np.ndarray:
        if path not in self._arrays:
            with np.load(path, allow_pickle=False) as z:
                self._arrays[path] = z["cine"]
        return self._arrays[path]

    def preload(self) -> None:
        for path, _ in self.entries:
            self._array(path)

    def frames(self, i: int) -> np.ndarray:
        """float32 ``[T, H, W]`` of entry ``i``, divided by its maximum (as ``load_cine_series``)."""
        path, index = self.entries[i]
        arr = self._array(path)
        series = (arr if index is None else arr[index]).astype(np.float32)
        peak = float(series.max()) if series.size else 0.0
        if not np.isfinite(series).all() or series.min() < 0 or peak <= 0:
            raise InputError(f"{path}: slice {index} is not a valid magnitude series (negative, non-finite or all 0)")
        return series / np.float32(peak)


def split_series(cfg: DataConfig) -> tuple[list[Path], list[Path]]:
    """Real series files for training and for validation (``holdout``), per ``cfg.images``."""
    if cfg.images == "phantom":
        return [], []
    d = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    files = list_series(d) if d is not None and d.is_dir() else []
    if cfg.images == "real" and not files:
        raise InputError(f"data.images is 'real' but no .npz cine series were found (data_dir: {d})")
    held = set(cfg.holdout)
    train = [f for f in files if f.stem not in held]
    val = [f for f in files if f.stem in held]
    if files and not train:
        raise InputError("every real series is held out for validation; nothing is left to train on")
    return train, val
