"""What a scanner varies from one cine acquisition to the next, and the ranges we draw it from.

An :class:`Acquisition` is everything the forward model (:func:`recon.simulate.cine.simulate_slice`)
needs besides the object: matrix and field of view, readout oversampling, frames, the
receive array (coil family, element count, loop size and stand-off, body outline),
noise level and inter-coil correlation, the sampling mask (R, ACS lines, shifted or
not), the background-phase model, the data's intensity scale and the order in which
the lines are written to the stream.

An :class:`AcquisitionSpace` is a distribution over acquisitions. Two are defined here
and used by default everywhere:

* :data:`TRAIN_SPACE`: what the networks are trained on. Coil families ``wrap``,
  ``ring`` and ``front_back`` with an even number of elements from 4 to 32; image SNR
  (:func:`recon.simulate.cine.noise_sigma`) log-uniform in 4-30 or 80-3000 (very noisy
  to nearly noise-free); readout
  oversampling 1 or 2; matrix 96-256; 12-30 frames; R in {4, 8, 10, 24}; shifted masks
  in 30 % of the samples, 30 % of those with at least R frames calibrated from the
  time average (no calibration block in any frame); segmented line order.
* :data:`HELDOUT_SPACE`: acquisitions the networks never see, for validation: the
  ``dipole`` coil model (a different physical model), odd element counts (7, 15, 23),
  image SNR 30-80 (the band left out of training), line-by-line order.

Validating on the held-out space (and on a held-out patient) measures how well a model
carries over to data it was not trained on, which our own validation set cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recon.errors import InputError
from recon.masks import CMRX_ACCELERATIONS, cine_mask
from recon.simulate.coils import COIL_FAMILIES, check_family_coils

PHASE_MODELS = ("smooth", "strong", "ramp")
ORDERINGS = ("segmented", "linear")
CALIBRATIONS = ("frame", "average")


@dataclass(frozen=True)
class Acquisition:
    """One slice's acquisition parameters (see the module docstring).

    matrix : recon matrix ``(ny, nx)`` (phase encode, readout).
    fov_mm : recon field of view ``(y, x)``.
    readout_oversampling : encoded readout = ``readout_oversampling * nx`` samples.
    frames : cardiac phases.
    coil_family : one of :data:`recon.simulate.coils.COIL_FAMILIES`.
    n_coils : receive elements.
    standoff_mm : distance of the elements outside the body outline.
    radius_scale : loop size relative to the size that tiles the array.
    body_margin : the receive array wraps an ellipse this many times larger than the
        smallest centred ellipse around the anatomy (:func:`recon.simulate.cine.body_axes`):
        the elements sit outside the body, as on a patient, whatever the image shows.
    snr : image SNR of the fully sampled coil-combined image (see :mod:`recon.simulate.cine`).
    noise_correlation : typical inter-coil noise correlation coefficient, [0, 1).
    acceleration : R (every R-th line plus the ACS).
    n_acs : fully sampled central lines.
    shifted_mask : the lattice moves by one line per frame.
    calibration : where the ACS lines come from (:data:`CALIBRATIONS`): ``frame``, every
        frame samples the ``n_acs`` central lines; ``average`` (a shifted mask with at
        least R frames: TSENSE / TGRAPPA style), every frame samples the lattice only and
        the central lines it happens to hold are flagged as calibration, so the maps come
        from the time average of the frames.
    phase_model : background phase, one of :data:`PHASE_MODELS` (``smooth``: up to
        pi/2; ``strong``: up to 3 pi, wrapping; ``ramp``: a linear ramp of up to 2 cycles
        across the FOV plus an offset, as an off-centre echo or FOV shift gives).
    intensity : global scale of the data (receiver gain, vendor scaling).
    ordering : line order in the stream: ``segmented`` (heartbeat -> phase -> lines)
        or ``linear`` (line by line, every phase of a line before the next line).
    """

    matrix: tuple[int, int] = (128, 128)
    fov_mm: tuple[float, float] = (320.0, 320.0)
    readout_oversampling: int = 2
    frames: int = 12
    coil_family: str = "wrap"
    n_coils: int = 10
    standoff_mm: float = 10.0
    radius_scale: float = 1.0
    body_margin: float = 1.05
    snr: float = 40.0
    noise_correlation: float = 0.1
    acceleration: int = 8
    n_acs: int = 24
    shifted_mask: bool = False
    calibration: str = "frame"
    phase_model: str = "smooth"
    intensity: float = 1.0
    ordering: str = "segmented"

    @property
    def calibration_in_every_frame(self) -> bool:
        """Whether every frame acquires the calibration block (``calibration == "frame"``)."""
        return self.calibration == "frame"

    def mask(self) -> np.ndarray:
        """The line mask ``[frames, ny]`` (bool) of this acquisition."""
        n_acs = self.n_acs if self.calibration_in_every_frame else 0
        return cine_mask(self.matrix[0], self.acceleration, n_acs, self.frames, self.shifted_mask)

    def validate(self) -> "Acquisition":
        ny, nx = self.matrix
        if min(ny, nx) < 16:
            raise InputError(f"matrix {self.matrix} too small (each side >= 16)")
        if min(self.fov_mm) <= 0:
            raise InputError(f"fov_mm must be positive, got {self.fov_mm}")
        for name in ("readout_oversampling", "frames", "n_coils", "acceleration"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.coil_family not in COIL_FAMILIES:
            raise InputError(f"coil_family must be one of {COIL_FAMILIES}, got {self.coil_family!r}")
        check_family_coils(self.coil_family, self.n_coils)
        if not 0 <= self.n_acs <= ny:
            raise InputError(f"n_acs = {self.n_acs} must lie in [0, {ny}]")
        if not self.snr > 0:
            raise InputError(f"snr must be positive, got {self.snr}")
        if not 0 <= self.noise_correlation < 1:
            raise InputError(f"noise_correlation must lie in [0, 1), got {self.noise_correlation}")
        if self.phase_model not in PHASE_MODELS:
            raise InputError(f"phase_model must be one of {PHASE_MODELS}, got {self.phase_model!r}")
        if self.ordering not in ORDERINGS:
            raise InputError(f"ordering must be one of {ORDERINGS}, got {self.ordering!r}")
        if self.calibration not in CALIBRATIONS:
            raise InputError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.calibration == "average" and not (self.shifted_mask and self.frames >= self.acceleration):
            raise InputError(f"calibration 'average' needs a shifted mask and at least R = {self.acceleration} "
                             f"frames (got shifted_mask={self.shifted_mask}, {self.frames} frames): else some "
                             f"calibration line is never acquired")
        if not (self.intensity > 0 and np.isfinite(self.intensity)):
            raise InputError(f"intensity must be a positive number, got {self.intensity}")
        if not (np.isfinite(self.body_margin) and self.body_margin >= 1):
            raise InputError(f"body_margin must be >= 1, got {self.body_margin}")
        if self.standoff_mm <= 0 or self.radius_scale <= 0:
            raise InputError("standoff_mm and radius_scale must be > 0")
        return self

    @property
    def samples(self) -> int:
        """Complex samples of the fully sampled multi-coil data: ``t * c * ny * nx * oversampling``."""
        ny, nx = self.matrix
        return self.frames * self.n_coils * ny * nx * self.readout_oversampling


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


@dataclass(frozen=True)
class AcquisitionSpace:
    """A distribution over :class:`Acquisition` (uniform choices, log-uniform SNR).

    coil_families, coil_counts : drawn uniformly.
    snr_bands : ``[(lo, hi), ...]``; a band is chosen uniformly, the SNR log-uniformly in it.
    matrix : readout size ``nx`` uniform in ``[lo, hi]`` (even); the phase-encode size
        ``ny`` is ``nx`` times ``U(phase_fraction)``, clipped to ``[lo, nx]`` (even).
    fov_mm : readout FOV uniform in ``[lo, hi]``; the phase FOV keeps square pixels.
    frames : uniform integers in ``[lo, hi]``.
    readout_oversampling : drawn uniformly.
    accelerations : R drawn uniformly (unless the caller fixes it).
    n_acs : ACS lines.
    shifted_mask : probability of a shifted mask.
    average_calibration : probability that a shifted mask with at least R frames is
        calibrated from the time average (``Acquisition.calibration = "average"``).
    noise_correlation : uniform in ``[lo, hi]``.
    phase_models, orderings : drawn uniformly.
    intensity : log-uniform in ``[lo, hi]``.
    standoff_mm, radius_scale : uniform in ``[lo, hi]``.
    body_margin : uniform in ``[lo, hi]`` (>= 1).
    max_samples : bound on :attr:`Acquisition.samples` (memory of one simulated slice,
        8 bytes each): when the draw exceeds it, the coil count is redrawn among the
        counts that fit, then the frames are reduced.
    """

    name: str = "train"
    coil_families: tuple[str, ...] = ("wrap", "ring", "front_back")
    coil_counts: tuple[int, ...] = tuple(range(4, 33, 2))
    snr_bands: tuple[tuple[float, float], ...] = ((4.0, 30.0), (80.0, 3000.0))
    matrix: tuple[int, int] = (96, 256)
    phase_fraction: tuple[float, float] = (0.65, 1.0)
    fov_mm: tuple[float, float] = (280.0, 420.0)
    frames: tuple[int, int] = (12, 30)
    readout_oversampling: tuple[int, ...] = (1, 2)
    accelerations: tuple[int, ...] = CMRX_ACCELERATIONS
    n_acs: int = 24
    shifted_mask: float = 0.3
    average_calibration: float = 0.3
    noise_correlation: tuple[float, float] = (0.0, 0.5)
    phase_models: tuple[str, ...] = PHASE_MODELS
    orderings: tuple[str, ...] = ("segmented",)
    intensity: tuple[float, float] = (1e-3, 1e3)
    standoff_mm: tuple[float, float] = (5.0, 40.0)
    radius_scale: tuple[float, float] = (0.7, 1.4)
    body_margin: tuple[float, float] = (1.0, 1.15)
    max_samples: int = 24_000_000

    def validate(self) -> "AcquisitionSpace":
        if not self.coil_families or any(f not in COIL_FAMILIES for f in self.coil_families):
            raise InputError(f"coil_families must be a non-empty subset of {COIL_FAMILIES}, got {self.coil_families}")
        if not self.coil_counts or min(self.coil_counts) < 1:
            raise InputError(f"coil_counts must be a non-empty list of integers >= 1, got {self.coil_counts}")
        for family in self.coil_families:
            check_family_coils(family, max(self.coil_counts), suggest=True)
        if not self.snr_bands or any(not 0 < lo <= hi for lo, hi in self.snr_bands):
            raise InputError(f"snr_bands must be non-empty (lo, hi) pairs with 0 < lo <= hi, got {self.snr_bands}")
        lo, hi = self.matrix
        if not 16 <= lo <= hi:
            raise InputError(f"matrix range must satisfy 16 <= lo <= hi, got {self.matrix}")
        if not 0 < self.phase_fraction[0] <= self.phase_fraction[1] <= 1:
            raise InputError(f"phase_fraction must satisfy 0 < lo <= hi <= 1, got {self.phase_fraction}")
        if not 0 < self.fov_mm[0] <= self.fov_mm[1]:
            raise InputError(f"fov_mm range must satisfy 0 < lo <= hi, got {self.fov_mm}")
        if not 1 <= self.frames[0] <= self.frames[1]:
            raise InputError(f"frames range must satisfy 1 <= lo <= hi, got {self.frames}")
        if not self.readout_oversampling or min(self.readout_oversampling) < 1:
            raise InputError(f"readout_oversampling must hold integers >= 1, got {self.readout_oversampling}")
        if not self.accelerations or min(self.accelerations) < 1:
            raise InputError(f"accelerations must hold integers >= 1, got {self.accelerations}")
        if not 0 <= self.n_acs <= lo:
            raise InputError(f"n_acs {self.n_acs} must lie in [0, smallest matrix {lo}]")
        if not 0 <= self.shifted_mask <= 1:
            raise InputError(f"shifted_mask is a probability, got {self.shifted_mask}")
        if not 0 <= self.average_calibration <= 1:
            raise InputError(f"average_calibration is a probability, got {self.average_calibration}")
        if not 0 <= self.noise_correlation[0] <= self.noise_correlation[1] < 1:
            raise InputError(f"noise_correlation must satisfy 0 <= lo <= hi < 1, got {self.noise_correlation}")
        if not self.phase_models or any(m not in PHASE_MODELS for m in self.phase_models):
            raise InputError(f"phase_models must be a non-empty subset of {PHASE_MODELS}")
        if not self.orderings or any(o not in ORDERINGS for o in self.orderings):
            raise InputError(f"orderings must be a non-empty subset of {ORDERINGS}")
        for name in ("intensity", "standoff_mm", "radius_scale", "body_margin"):
            a, b = getattr(self, name)
            if not 0 < a <= b:
                raise InputError(f"{name} range must satisfy 0 < lo <= hi, got {(a, b)}")
        if self.body_margin[0] < 1:
            raise InputError(f"body_margin must be >= 1 (the array outside the body), got {self.body_margin}")
        if self.max_samples < 1:
            raise InputError(f"max_samples must be >= 1, got {self.max_samples}")
        return self

    def draw(self, rng: np.random.Generator, acceleration: int | None = None) -> Acquisition:
        """One acquisition from this space (R fixed to ``acceleration`` when given)."""
        lo, hi = self.matrix
        nx = 2 * (int(rng.integers(lo, hi + 1)) // 2)
        ny = int(np.clip(2 * round(nx * rng.uniform(*self.phase_fraction) / 2), lo, nx))
        fov_x = rng.uniform(*self.fov_mm)
        osf = int(rng.choice(self.readout_oversampling))
        frames = int(rng.integers(self.frames[0], self.frames[1] + 1))
        coils = int(rng.choice(self.coil_counts))
        per_coil = ny * nx * osf
        if frames * coils * per_coil > self.max_samples:
            fits = [c for c in self.coil_counts if frames * c * per_coil <= self.max_samples]
            coils = int(rng.choice(fits)) if fits else min(self.coil_counts)
            frames = int(max(1, min(frames, self.max_samples // (coils * per_coil))))
        band = self.snr_bands[int(rng.integers(len(self.snr_bands)))]
        acq = Acquisition(
            matrix=(ny, nx),
            fov_mm=(fov_x * ny / nx, fov_x),
            readout_oversampling=osf,
            frames=frames,
            coil_family=str(rng.choice(self.coil_families)),
            n_coils=coils,
            standoff_mm=rng.uniform(*self.standoff_mm),
            radius_scale=rng.uniform(*self.radius_scale),
            body_margin=rng.uniform(*self.body_margin),
            snr=_loguniform(rng, *band),
            noise_correlation=rng.uniform(*self.noise_correlation),
            acceleration=int(rng.choice(self.accelerations)) if acceleration is None else int(acceleration),
            n_acs=self.n_acs,
            shifted_mask=bool(rng.random() < self.shifted_mask),
            phase_model=str(rng.choice(self.phase_models)),
            intensity=_loguniform(rng, *self.intensity),
            ordering=str(rng.choice(self.orderings)),
        )
        return self._calibrated(acq, rng).validate()

    def vary_mask(self, acq: Acquisition, rng: np.random.Generator) -> Acquisition:
        """``acq`` with its own R, mask shift and calibration drawn from this space (the
        variants of one simulated scene)."""
        acq = replace(acq, acceleration=int(rng.choice(self.accelerations)),
                      shifted_mask=bool(rng.random() < self.shifted_mask), calibration="frame")
        return self._calibrated(acq, rng).validate()

    def _calibrated(self, acq: Acquisition, rng: np.random.Generator) -> Acquisition:
        if acq.shifted_mask and acq.frames >= acq.acceleration and rng.random() < self.average_calibration:
            return replace(acq, calibration="average")
        return acq


#: What the networks are trained on (module docstring).
TRAIN_SPACE = AcquisitionSpace()

#: Acquisitions kept out of training, for validation (module docstring).
HELDOUT_SPACE = replace(
    TRAIN_SPACE,
    name="heldout",
    coil_families=("dipole",),
    coil_counts=(7, 15, 23),
    snr_bands=((30.0, 80.0),),
    orderings=("linear",),
)

SPACES = {s.name: s for s in (TRAIN_SPACE, HELDOUT_SPACE)}


def space(name: str) -> AcquisitionSpace:
    """The predefined space ``name`` (``train`` or ``heldout``)."""
    try:
        return SPACES[name]
    except KeyError:
        raise InputError(f"unknown acquisition space {name!r}; known: {', '.join(SPACES)}") from None
