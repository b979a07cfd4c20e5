"""Reconstructed frames -> ISMRMRD images with headers copied from the acquisitions.

One image per frame (cardiac phase) and slice. The header of each image is built
from the acquisition closest to the k-space centre of that frame
(``SliceData.frame_headers``): position, read/phase/slice directions, patient
table position, time stamps (acquisition and physiology), average / slice /
contrast / phase / repetition / set are copied, never hand-filled; then what
belongs to the image is set: matrix size, field of view (recon space), image type,
index and series index. Meta attributes carry DataRole, ImageProcessingHistory,
ImageComment (method and weights) and WindowCenter / WindowWidth.

The same function serves ``crunet recon-file``, the standalone server and the
Gadgetron gadget; the HDF5 layout written by :func:`write_images` is the one of
``gadgetron_ismrmrd_client``: ``/<group>/image_<series>/{data,header,attributes}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import ismrmrd
import numpy as np

from recon.errors import InputError
from recon.io.limits import short_list
from recon.slicedata import SliceData

#: Output image types a setting may name (``ImageType``), and their ISMRMRD image type.
ImageType = Literal["magnitude", "complex"]
IMAGE_TYPES = dict(zip(get_args(ImageType), (ismrmrd.IMTYPE_MAGNITUDE, ismrmrd.IMTYPE_COMPLEX)))
#: ``image_index`` and ``image_series_index`` are unsigned 16-bit in the ISMRMRD image header.
MAX_INDEX = 65535


def check_index(name: str, value: int) -> int:
    """``value`` if it fits an ISMRMRD 16-bit index field, else an :class:`InputError` (no silent wrap)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_INDEX:
        raise InputError(f"{name} must be an integer in 0..{MAX_INDEX} (ISMRMRD stores it in 16 bits), "
                         f"got {value!r}")
    return int(value)


def check_finite_frames(frames: np.ndarray, slice_index: int) -> None:
    """Reconstructed frames ``[t, y, x]`` hold no NaN/Inf; else an :class:`InputError` naming the frames."""
    bad = ~np.isfinite(frames).reshape(frames.shape[0], -1).all(axis=1)
    if bad.any():
        raise InputError(f"slice {slice_index}: the reconstruction gave NaN/Inf in frame(s) "
                         f"{short_list(np.flatnonzero(bad))}; no images written for this slice")


def window(magnitude: np.ndarray) -> tuple[float, float]:
    """Display window (centre, width) covering the 1st to 99.5th percentile."""
    lo, hi = np.percentile(magnitude, [1.0, 99.5])
    return float((hi + lo) / 2), float(max(hi - lo, 1e-12))


def slice_images(
    frames: np.ndarray,
    s: SliceData,
    series_index: int = 1,
    image_type: str = "magnitude",
    comment: str = "",
    start_index: int = 1,
    extra_meta: dict | None = None,
) -> list[ismrmrd.Image]:
    """ISMRMRD images of one reconstructed slice.

    Parameters
    ----------
    frames : complex ``[t, y, x]`` on the recon grid.
    s : the slice the frames were reconstructed from (headers, encoding).
    series_index : ``image_series_index`` of every image.
    image_type : ``"magnitude"`` (float32) or ``"complex"`` (complex64).
    comment : ImageComment meta value (method, weights...).
    start_index : ``image_index`` of the first frame; the others follow.

    Raises
    ------
    InputError : bad arguments, indices that do not fit ISMRMRD's 16 bits, or
        frames holding NaN/Inf (never a silently broken image).
    """
    if image_type not in IMAGE_TYPES:
        raise InputError(f"image type must be one of {sorted(IMAGE_TYPES)}, got '{image_type}'")
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] != s.n_frames:
        raise InputError(f"expected frames [t={s.n_frames}, y, x], got shape {frames.shape}")
    check_index("image_series_index", series_index)
    check_index("image_index", start_index)
    check_index("image_index", start_index + frames.shape[0] - 1)
    check_finite_frames(frames, s.slice_index)
    mag = np.abs(frames).astype(np.float32)
    center, width = window(mag)
    fov = tuple(np.float32(v) for v in s.encoding.recon_fov_mm)
    images = []
    for t in range(frames.shape[0]):
        acq = ismrmrd.AcquisitionHeader.from_buffer_copy(s.frame_headers[t].tobytes())
        data = mag[t] if image_type == "magnitude" else frames[t].astype(np.complex64)
        img = ismrmrd.Image.from_array(
            np.ascontiguousarray(data)[None, None], acquisition=acq,
            image_type=IMAGE_TYPES[image_type], image_index=start_index + t,
            image_series_index=series_index, transpose=False,
        )
        img.field_of_view[:] = fov
        meta = ismrmrd.Meta({
            "DataRole": "Image",
            "ImageProcessingHistory": ["PYTHON", "CRUNET"],
            "ImageComment": comment or "crunet",
            "WindowCenter": str(int(round(center))) if center >= 10 else f"{center:.6g}",
            "WindowWidth": str(int(round(width))) if width >= 10 else f"{width:.6g}",
            "Keep_image_geometry": 1,
        })
        if extra_meta:
            meta.update(extra_meta)
        img.attribute_string = meta.serialize()
        images.append(img)
    return images


def check_appendable(path: str | Path, group: str, series: int, shape: tuple[int, int], image_type: str) -> None:
    """Images ``[y, x]`` of ``image_type`` can be appended to ``/<group>/image_<series>/`` of ``path``
    (absent, or holding images of that size and type); else an :class:`InputError` saying what to change."""
    import h5py

    path = Path(path)
    if not path.exists():
        return
    dtype = np.dtype(np.float32 if image_type == "magnitude" else np.complex64)
    try:
        with h5py.File(path, "r") as f:
            data = f.get(f"{group}/image_{series}/data")
            if data is None or not isinstance(data, h5py.Dataset):
                return
            have_shape, have_dtype = tuple(data.shape[1:]), data.dtype
    except OSError as exc:
        raise InputError(f"{path}: cannot read the existing output file ({exc})") from None
    if have_shape != (1, 1, *shape) or have_dtype != dtype:
        raise InputError(
            f"{path}: series image_{series} of group '{group}' holds {have_shape[-2]} x {have_shape[-1]} "
            f"{have_dtype} images, these are {shape[0]} x {shape[1]} {dtype}; choose another output file, "
            "group or series"
        )


def write_images(path: str | Path, images: list[ismrmrd.Image], group: str = "dataset") -> Path:
    """Append images to ``/<group>/image_<series>/`` of an HDF5 file (created if needed)."""
    path = Path(path)
    if images:
        first = images[0]
        image_type = "magnitude" if first.data.dtype == np.float32 else "complex"
        check_appendable(path, group, first.image_series_index, first.data.shape[-2:], image_type)
    with ismrmrd.Dataset(str(path), group, create_if_needed=True) as ds:
        for img in images:
            ds.append_image(f"image_{img.image_series_index}", img)
    return path


def read_images(path: str | Path, group: str = "dataset") -> dict[int, tuple[np.ndarray, np.ndarray, list[str]]]:
    """All image series of a file: ``{series: (data [n, ch, z, y, x], headers [n], attributes)}``."""
    import h5py

    path = Path(path)
    out = {}
    with h5py.File(path, "r") as f:
        if group not in f:
            raise InputError(f"{path}: no group '{group}' (groups: {sorted(f.keys())})")
        for name, g in f[group].items():
            if name.startswith("image_") and isinstance(g, h5py.Group) and "data" in g:
                attrs = [a.decode() if isinstance(a, bytes) else str(a) for a in g["attributes"][()]]
                out[int(name.split("_", 1)[1])] = (g["data"][()], g["header"][()], attrs)
    return out
