"""Real cardiac cine magnitude series (``shared/data/*.npz``) as an image source.

The files hold an array ``cine`` of stored pixel values: ``(slices, phases, H, W)``
for the Sunnybrook short-axis stacks, ``(phases, H, W)`` for single-slice series
such as the rat cine (see ``shared/data/README.md``). They are magnitude images,
not raw data: phase, coils, noise and undersampling are simulated on top.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from recon.errors import InputError

DATA_DIR_ENV = "CRUNET_DATA_DIR"


def load_cine_series(path: str | os.PathLike, slice_index: int | None = None) -> np.ndarray:
    """Load one cine slice from an ``.npz`` file, normalised to maximum 1.

    Parameters
    ----------
    path : str or path-like
        ``.npz`` archive holding an array ``cine`` of shape
        ``(slices, phases, H, W)`` or ``(phases, H, W)`` with non-negative values.
    slice_index : int, optional
        Slice of a 4-D stack, in ``[0, slices)``; None selects the middle slice
        (``slices // 2``). A 3-D series has one slice: only None or 0.

    Returns
    -------
    numpy.ndarray
        float32 [phases, H, W], values in [0, 1], maximum 1.

    Raises
    ------
    InputError
        If the file is missing or not an ``.npz`` archive, has no ``cine``
        array, the array has the wrong rank or values, the slice index is out
        of range, or the selected slice is all zero.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"cine series file {str(p)!r} does not exist or is not a file")
    try:
        archive = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{str(p)!r} is not a readable .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{str(p)!r} is a single .npy array, expected an .npz archive with an array 'cine'")
    with archive:
        if "cine" not in archive.files:
            raise InputError(f"{str(p)!r} has no array 'cine' (arrays: {sorted(archive.files)})")
        try:
            cine = archive["cine"]
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"array 'cine' in {str(p)!r} cannot be read: {exc}") from None

    if not (np.issubdtype(cine.dtype, np.number) and not np.issubdtype(cine.dtype, np.complexfloating)):
        raise InputError(f"'cine' in {str(p)!r} has dtype {cine.dtype}, expected real numbers")
    if cine.ndim == 4:
        n_slices = cine.shape[0]
        index = n_slices // 2 if slice_index is None else slice_index
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n_slices:
            raise InputError(f"slice_index {slice_index!r} out of range for {n_slices} slices in {str(p)!r}")
        series = cine[index]
    elif cine.ndim == 3:
        if slice_index not in (None, 0) or isinstance(slice_index, bool):
            raise InputError(f"slice_index {slice_index!r} out of range: {str(p)!r} holds a single slice")
        series = cine
    else:
        raise InputError(
            f"'cine' in {str(p)!r} has shape {cine.shape}; expected (slices, phases, H, W) or (phases, H, W)"
        )
    if min(series.shape) < 1:
        raise InputError(f"'cine' in {str(p)!r} is empty: shape {cine.shape}")
    series = series.astype(np.float32)
    if not np.all(np.isfinite(series)):
        raise InputError(f"'cine' in {str(p)!r} holds non-finite values")
    if series.min() < 0:
        raise InputError(f"'cine' in {str(p)!r} holds negative values; magnitude images expected")
    peak = float(series.max())
    if peak == 0.0:
        which = "series" if cine.ndim == 3 else f"slice {index}"
        raise InputError(f"{which} of {str(p)!r} is all zero")
    return series / np.float32(peak)


def fit_to_matrix(series: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fit a series to an image matrix without zero padding.

    The frames are centre-cropped to the aspect ratio of ``shape`` and then
    resampled with linear interpolation (``scipy.ndimage.zoom``, ``order=1``);
    when shrinking, a Gaussian pre-filter (sigma ``(1 / zoom - 1) / 2`` pixels)
    limits aliasing. The time axis is untouched.

    Parameters
    ----------
    series : numpy.ndarray
        real [t, H, W].
    shape : tuple of int
        Target ``(ny, nx)``, each >= 1.

    Returns
    -------
    numpy.ndarray
        float32 [t, ny, nx].
    """
    series = np.asarray(series)
    if series.ndim != 3 or min(series.shape) < 1:
        raise InputError(f"series must be a non-empty [t, H, W] array, got shape {series.shape}")
    if np.iscomplexobj(series):
        raise InputError("series must be real (magnitude) images")
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be a pair of integers (ny, nx), got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise InputError(f"shape must hold two integers >= 1, got {shape!r}")
    _, h, w = series.shape
    # centre crop to the target aspect ratio ny / nx
    if h * nx > w * ny:
        h_c, w_c = max(1, round(w * ny / nx)), w
    else:
        h_c, w_c = h, max(1, round(h * nx / ny))
    y0, x0 = (h - h_c) // 2, (w - w_c) // 2
    crop = series[:, y0 : y0 + h_c, x0 : x0 + w_c].astype(np.float32)
    zoom = (ny / h_c, nx / w_c)
    sigma = [0.0] + [max(0.0, (1.0 / z - 1.0) / 2.0) for z in zoom]
    if any(s > 0 for s in sigma):
        crop = ndimage.gaussian_filter(crop, sigma, mode="nearest")
    out = ndimage.zoom(crop, (1.0, *zoom), order=1, mode="nearest", grid_mode=False)
    if out.shape[1:] != (ny, nx):  # rounding of the output size; never more than a pixel
        out = _pad_or_trim(out, (ny, nx))
    return out.astype(np.float32)


def _pad_or_trim(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    a = a[:, : shape[0], : shape[1]]
    pad = [(0, 0), (0, shape[0] - a.shape[1]), (0, shape[1] - a.shape[2])]
    return np.pad(a, pad, mode="edge")


def list_series(data_dir: str | os.PathLike) -> list[Path]:
    """The ``.npz`` files directly inside ``data_dir``, sorted by name.

    Raises
    ------
    InputError
        If ``data_dir`` is not a directory.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise InputError(f"data directory {str(d)!r} does not exist or is not a directory")
    return sorted(p for p in d.glob("*.npz") if p.is_file())


#: The shipped held-out patient's whole short-axis cine (``data/``, with its licence): never trained on.
HELDOUT_SERIES = "sunnybrook_SCD0000401_sax_cine.npz"
#: ``image_source("real")``: that series.
REAL_SOURCE = "real"


def shipped_series(name: str = HELDOUT_SERIES) -> Path:
    """A real series shipped with the project: ``data/`` of the source tree, or the installed share folder."""
    import sys

    here = Path(__file__).resolve().parents[2]
    places = (here / "data", Path(sys.prefix) / "share" / "crunet-gadgetron" / "data")
    for d in places:
        if (d / name).is_file():
            return d / name
    raise InputError(f"the shipped series {name} is missing (looked in {places[0]} and {places[1]})")


def image_source(text: str) -> str:
    """A simulation's image source from the command line: ``phantom``, ``real`` (the shipped
    held-out series, :data:`HELDOUT_SERIES`) or a ``.npz`` cine series' path (checked here)."""
    if text == "phantom":
        return text
    path = shipped_series() if text == REAL_SOURCE else Path(text)
    if path.suffix != ".npz" or not path.is_file():
        raise InputError(f"image source {text!r} is neither 'phantom', '{REAL_SOURCE}' nor an existing .npz file")
    return str(path)


def default_data_dir() -> Path | None:
    """Locate the ``shared/data`` folder of real cine series.

    The environment variable ``CRUNET_DATA_DIR`` wins if set (an InputError if
    it does not name a directory). Otherwise the current working directory and
    this file's directory are walked up, looking for ``<ancestor>/shared/data``
    (e.g. ``/work/main`` finds ``/work/shared/data``).

    Returns
    -------
    pathlib.Path or None
        The directory, or None if none was found.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        d = Path(env).expanduser()
        if not d.is_dir():
            raise InputError(f"{DATA_DIR_ENV}={env!r} is not a directory")
        return d.resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for ancestor in (start, *start.parents):
            candidate = ancestor / "shared" / "data"
            if candidate.is_dir():
                return candidate.resolve()
    return None


__all__ = ["DATA_DIR_ENV", "HELDOUT_SERIES", "REAL_SOURCE", "load_cine_series", "fit_to_matrix", "list_series",
           "default_data_dir", "image_source", "shipped_series"]
