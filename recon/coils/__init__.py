"""Coil sensitivity maps from the calibration (ACS) lines, and coil compression.

* :func:`estimate_maps` — maps ``[c, y, x]`` of a :class:`~recon.slicedata.SliceData`
  on its recon grid (time-averaged ACS; ESPIRiT by default, or Walsh);
* :func:`maps_from_acs` — the same from plain arrays;
* :mod:`recon.coils.espirit`, :mod:`recon.coils.walsh` — the methods;
* :mod:`recon.coils.compression` — SVD coil compression;
* :mod:`recon.coils.bart_io` — BART ``.cfl`` files and ``bart ecalib`` (reference).
"""

from recon.coils.compression import compress, compress_slice, compression_matrix
from recon.coils.espirit import EspiritOptions, espirit_maps
from recon.coils.estimate import (
    METHODS,
    average_acs,
    calibration_region,
    compare_maps,
    estimate_maps,
    maps_from_acs,
)
from recon.coils.walsh import walsh_maps

__all__ = [
    "METHODS",
    "EspiritOptions",
    "average_acs",
    "calibration_region",
    "compare_maps",
    "compress",
    "compress_slice",
    "compression_matrix",
    "espirit_maps",
    "estimate_maps",
    "maps_from_acs",
    "walsh_maps",
]
