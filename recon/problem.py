"""One slice as a reconstruction problem: k-space, mask and coil maps on the recon grid.

Every method (classical or learned) starts from a :class:`SliceProblem`: tensors only,
no ISMRMRD. :func:`recon.pipeline.prepare` builds one from an assembled
:class:`recon.slicedata.SliceData` (readout oversampling removal, coil estimation and
the noise scan's level in exactly one place); training samples are built by the same
function.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from recon.errors import InputError
from recon.noise import QUICK_CALIBRATION_COLUMNS, calibration_inconsistency, check_sigma, estimate_sigma

log = logging.getLogger("crunet.problem")

#: Noise-scan and data estimates of sigma further apart than this factor are logged.
NOISE_DISAGREEMENT = 2.0


@dataclass
class SliceProblem:
    """Tensors of one slice (no batch axis).

    kspace : complex64 ``[t, c, y, x]``, recon grid, zeros where not sampled.
    mask : bool ``[t, y]``, sampled phase-encode lines per frame.
    maps : complex64 ``[c, y, x]``, coil sensitivities (unit sum-of-squares in the support).
    noise_sigma : per-coil k-space noise std of ``kspace`` (``sqrt(E|n|^2)`` of one
        complex sample, RMS over coils) on this grid, or None when unknown; then
        :func:`noise_level` estimates it from the k-space.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    noise_sigma: float | None = None

    def __post_init__(self):
        if self.noise_sigma is not None:
            self.noise_sigma = check_sigma(self.noise_sigma, "SliceProblem.noise_sigma")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.kspace.shape)  # type: ignore[return-value]

    def to(self, device: str | torch.device) -> "SliceProblem":
        return SliceProblem(self.kspace.to(device), self.mask.to(device), self.maps.to(device),
                            self.noise_sigma)

    def batched(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(k [1, t, c, y, x], mask [1, t, y], maps [1, c, y, x])`` for the batched operators."""
        return self.kspace[None], self.mask[None], self.maps[None]


def noise_level(p: SliceProblem) -> float:
    """Per-coil k-space noise std of ``p``, computed only by the methods that need it.

    ``p.noise_sigma`` (from a noise scan) when set, checked against an estimate from
    the calibration lines (:func:`recon.noise.estimate_sigma`, the quick one of
    :data:`recon.noise.QUICK_CALIBRATION_COLUMNS`: it only has to see a factor of
    :data:`NOISE_DISAGREEMENT`; the demo's slice 0.085 -> 0.02 s): a disagreement by more
    than that is logged and the noise scan kept. Without a scan, the full estimate
    (InputError when the mask has too few lines sampled in every frame).
    """
    columns = {} if p.noise_sigma is None else {"columns": QUICK_CALIBRATION_COLUMNS}
    try:
        estimate = estimate_sigma(p.kspace, p.mask, **columns)
    except InputError as exc:
        if p.noise_sigma is None:
            raise
        log.info("no noise estimate from the data to check the noise scan against (%s)", exc)
        return float(p.noise_sigma)
    if p.noise_sigma is None:
        return estimate
    scan = float(p.noise_sigma)
    if scan > 0 and not 1 / NOISE_DISAGREEMENT <= estimate / scan <= NOISE_DISAGREEMENT:
        log.warning("noise scan gives k-space noise std %.4g, the data %.4g; using the noise scan", scan, estimate)
    return scan


def weighting_noise_level(p: SliceProblem) -> float:
    """The noise level a model with noise-weighted data consistency is given, in training on
    raw files and at inference alike: the noise scan's as it is (:func:`noise_level`'s check
    of a scan against the data costs 0.1-0.3 s a slice, which the classical methods pay),
    else the quick estimate from the data (:func:`recon.noise.estimate_sigma` with
    :data:`recon.noise.QUICK_CALIBRATION_COLUMNS`: about a quarter of the full estimate's
    time, which was itself about a quarter of a 16-channel network's forward; the weight
    ``tau^2 / (tau^2 + sigma^2)`` needs sigma only where it nears tau, at low SNR, where
    the two estimates agree within 5 %). Data with neither (no scan, no line sampled in
    every frame to estimate from) get 0: hard data consistency, the noise-free case; logged."""
    if p.noise_sigma is not None:
        return float(p.noise_sigma)
    try:
        return estimate_sigma(p.kspace, p.mask, columns=QUICK_CALIBRATION_COLUMNS)
    except InputError as exc:
        log.warning("no noise level for the noise-weighted data consistency (%s): hard data consistency", exc)
        return 0.0


def inconsistency_level(p: SliceProblem) -> float:
    """Per-coil k-space std of everything the SENSE model leaves unexplained: the noise
    level (:func:`noise_level`) or, when larger, the inconsistency of the calibration
    lines with the coil maps (:func:`recon.noise.calibration_inconsistency`: coil-map
    error, signal outside the maps, noise). The classical methods' defaults are
    derived from it: at low noise the map error, not the noise, limits them."""
    return noise_and_inconsistency(p)[1]


def noise_and_inconsistency(p: SliceProblem) -> tuple[float, float]:
    """``(noise_level(p), inconsistency_level(p))``, the noise measured once; their ratio
    (>= 1) says how far the SENSE model, not the noise, limits the data's fit."""
    sigma = noise_level(p)
    try:
        return sigma, max(sigma, calibration_inconsistency(p.kspace, p.mask, p.maps))
    except InputError as exc:  # a calibration block too small to measure it: the noise alone
        log.info("no model-inconsistency measure (%s); using the noise level", exc)
        return sigma, sigma
