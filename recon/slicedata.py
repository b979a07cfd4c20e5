"""The per-slice container every entry point hands to the reconstruction core.

Assembly (from an ISMRMRD file, a Gadgetron bucket or a CMRxRecon file) produces a
:class:`SliceData`; coil estimation and the reconstruction methods consume it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import ismrmrd.xsd as xsd
from ismrmrd.hdf5 import acquisition_header_dtype

#: Structured dtype of one ISMRMRD acquisition header (as stored in HDF5 files).
ACQ_HEADER_DTYPE = acquisition_header_dtype


@dataclass(frozen=True)
class Limit:
    """One ``encodingLimits`` entry (inclusive minimum/maximum, centre)."""

    minimum: int
    maximum: int
    center: int

    @property
    def size(self) -> int:
        return self.maximum - self.minimum + 1


@dataclass(frozen=True)
class EncodingInfo:
    """What the reconstruction needs from ``encoding[0]`` of a header.

    Matrix sizes are ``(x, y, z)`` as in the XML; ``encoded_matrix[0]`` includes
    readout oversampling, ``recon_matrix[0]`` does not.
    """

    encoded_matrix: tuple[int, int, int]
    recon_matrix: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_fov_mm: tuple[float, float, float]
    trajectory: str
    ky: Limit
    phase: Limit
    slice: Limit
    repetition: Limit
    acceleration: tuple[int, int]
    calibration_mode: str | None
    receiver_channels: int | None

    @property
    def readout_oversampling(self) -> float:
        """Encoded over recon readout size (2.0 for the usual 2x oversampling)."""
        return self.encoded_matrix[0] / self.recon_matrix[0]


@dataclass(frozen=True)
class Geometry:
    """Slice position and orientation in patient coordinates (mm, unit vectors)."""

    position: tuple[float, float, float]
    read_dir: tuple[float, float, float]
    phase_dir: tuple[float, float, float]
    slice_dir: tuple[float, float, float]
    patient_table_position: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def from_header(cls, head: np.void) -> "Geometry":
        """Geometry of one structured acquisition header (``ACQ_HEADER_DTYPE``)."""
        as3 = lambda name: tuple(float(v) for v in head[name])  # noqa: E731
        return cls(
            as3("position"), as3("read_dir"), as3("phase_dir"), as3("slice_dir"),
            as3("patient_table_position"),
        )


def slice_geometry(view: str, slice_number: int, n_slices: int, spacing_mm: float) -> Geometry:
    """Oblique double-angulated orientation typical of a SAX stack (``view="sax"``) or a LAX view,
    slice ``slice_number`` of ``n_slices`` spaced ``spacing_mm`` apart: for files we write without
    a scanner (simulation, CMRxRecon conversion)."""
    if view == "sax":
        normal = np.array([-0.55, 0.45, 0.70])
        read = np.array([0.78, 0.62, 0.0])
    else:
        normal = np.array([0.45, 0.85, -0.27])
        read = np.array([0.88, -0.47, 0.0])
    normal /= np.linalg.norm(normal)
    read = read - normal * (read @ normal)
    read /= np.linalg.norm(read)
    phase = np.cross(normal, read)
    center = np.array([12.0, -35.0, 20.0])
    pos = center + (slice_number - (n_slices - 1) / 2) * spacing_mm * normal
    t3 = lambda v: tuple(float(np.float32(a)) for a in v)  # noqa: E731
    return Geometry(t3(pos), t3(read), t3(phase), t3(normal), (0.0, 0.0, -1200.0))


@dataclass
class SliceData:
    """All acquired data of one slice, on the encoded Cartesian grid.

    Attributes
    ----------
    kspace : complex64 ``[t, c, ky, kx]``; imaging lines placed at their ky index,
        zeros elsewhere. ``kx`` is the encoded readout (with oversampling) unless
        the samples arrived with oversampling already removed.
    mask : bool ``[t, ky]``; True where an imaging line was acquired.
    acs : complex64 ``[t, c, n_acs, kx]``; calibration lines per frame
        (zeros where a frame lacks one of them).
    acs_lines : int64 ``[n_acs]``; ky index of each calibration line, ascending.
    acs_mask : bool ``[t, n_acs]``; which calibration lines each frame holds.
    acq_headers : ``ACQ_HEADER_DTYPE`` ``[n]``; every acquisition header of the
        slice in arrival order (noise scans excluded).
    frame_headers : ``ACQ_HEADER_DTYPE`` ``[t]``; per frame, the header of the
        acquired line closest to the k-space centre (source of image headers).
    encoding : the header's :class:`EncodingInfo`.
    header : the full ISMRMRD XML header, when known.
    slice_index : ``idx.slice`` of the slice.
    frame_dim : the counter used as frame axis (``"phase"`` or ``"repetition"``).
    """

    kspace: np.ndarray
    mask: np.ndarray
    acs: np.ndarray
    acs_lines: np.ndarray
    acs_mask: np.ndarray
    acq_headers: np.ndarray
    frame_headers: np.ndarray
    encoding: EncodingInfo
    header: xsd.ismrmrdHeader | None = None
    slice_index: int = 0
    frame_dim: str = "phase"
    extra: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def geometry(self) -> Geometry:
        return Geometry.from_header(self.frame_headers[0])

    @property
    def readout_oversampled(self) -> bool:
        """True when ``kx`` is larger than the recon readout (oversampling still in)."""
        return self.kspace.shape[-1] > self.encoding.recon_matrix[0]

    @property
    def acceleration(self) -> int:
        """Nominal R estimated from the mask outside the calibration block."""
        from recon.masks import estimate_acceleration

        return estimate_acceleration(self.mask, self.acs_lines)
