"""ISMRMRD acquisition flags as bit masks, vectorised over header arrays."""

from __future__ import annotations

import numpy as np
import ismrmrd.constants as c


def bit(flag: int) -> np.uint64:
    """Bit mask of an ISMRMRD flag number (flags are 1-based)."""
    return np.uint64(1) << np.uint64(flag - 1)


NOISE = bit(c.ACQ_IS_NOISE_MEASUREMENT)
CALIBRATION = bit(c.ACQ_IS_PARALLEL_CALIBRATION)
CALIBRATION_AND_IMAGING = bit(c.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
FIRST_IN_SLICE = bit(c.ACQ_FIRST_IN_SLICE)
LAST_IN_SLICE = bit(c.ACQ_LAST_IN_SLICE)
LAST_IN_MEASUREMENT = bit(c.ACQ_LAST_IN_MEASUREMENT)
REVERSE = bit(c.ACQ_IS_REVERSE)

#: Acquisitions that are not imaging or calibration data and are ignored by assembly.
NON_IMAGING = (
    bit(c.ACQ_IS_NAVIGATION_DATA)
    | bit(c.ACQ_IS_PHASECORR_DATA)
    | bit(c.ACQ_IS_HPFEEDBACK_DATA)
    | bit(c.ACQ_IS_DUMMYSCAN_DATA)
    | bit(c.ACQ_IS_RTFEEDBACK_DATA)
    | bit(c.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA)
    | bit(c.ACQ_IS_PHASE_STABILIZATION_REFERENCE)
    | bit(c.ACQ_IS_PHASE_STABILIZATION)
)


def has(flags, mask) -> np.ndarray:
    """Elementwise test ``flags & mask != 0`` on a scalar or uint64 array."""
    return (np.asarray(flags, dtype=np.uint64) & np.uint64(mask)) != 0


def is_noise(flags) -> np.ndarray:
    return has(flags, NOISE)


def is_calibration(flags) -> np.ndarray:
    """Lines the accumulator puts in ``ref`` (calibration, with or without imaging)."""
    return has(flags, CALIBRATION | CALIBRATION_AND_IMAGING)


def is_imaging(flags) -> np.ndarray:
    """Lines the accumulator puts in ``data``: not noise, not calibration-only, not auxiliary."""
    return ~has(flags, NOISE | CALIBRATION | NON_IMAGING)
