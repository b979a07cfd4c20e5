"""One slice as a reconstruction problem: k-space, mask and coil maps on the recon grid.

Every method (classical or learned) starts from a :class:`SliceProblem`, built
from a :class:`recon.slicedata.SliceData` by :func:`prepare`, so readout
oversampling removal, coil estimation and the noise level happen in exactly one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from recon.errors import InputError
from recon.kspace import to_recon_grid
from recon.noise import NOISE_SIGMA_KEY, calibration_inconsistency, check_sigma, estimate_sigma
from recon.slicedata import SliceData

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
    the calibration lines (:func:`recon.noise.estimate_sigma`): a disagreement by more
    than :data:`NOISE_DISAGREEMENT` is logged and the noise scan kept. Without it, the
    estimate (InputError when the mask has too few lines sampled in every frame).
    """
    try:
        estimate = estimate_sigma(p.kspace, p.mask)
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


def inconsistency_level(p: SliceProblem) -> float:
    """Per-coil k-space std of everything the SENSE model leaves unexplained: the noise
    level (:func:`noise_level`) or, when larger, the inconsistency of the calibration
    lines with the coil maps (:func:`recon.noise.calibration_inconsistency`: coil-map
    error, signal outside the maps, noise). The classical methods' defaults are
    derived from it: at low noise the map error, not the noise, limits them."""
    sigma = noise_level(p)
    try:
        return max(sigma, calibration_inconsistency(p.kspace, p.mask, p.maps))
    except InputError as exc:  # a calibration block too small to measure it: the noise alone
        log.info("no model-inconsistency measure (%s); using the noise level", exc)
        return sigma


def prepare(
    s: SliceData,
    maps: np.ndarray | torch.Tensor | None = None,
    coil_method: str = "espirit",
    device: str | torch.device = "cpu",
    **coil_options,
) -> SliceProblem:
    """Build the problem of one slice.

    Parameters
    ----------
    s : assembled slice (encoded grid).
    maps : coil maps ``[c, y, x]`` on the recon grid; estimated from the ACS with
        ``coil_method`` (see :func:`recon.coils.estimate_maps`) when None.
    device : torch device of the returned tensors.

    The problem's ``noise_sigma`` is the slice's noise-scan value when it carries one
    (``s.extra[NOISE_SIGMA_KEY]``, set by :func:`recon.io.raw.read_raw` and the chain),
    else None: methods that need the noise level call :func:`noise_level`, which then
    estimates it, so zero-filling and the learned models pay nothing for it.
    """
    k = to_recon_grid(s.kspace, s.encoding.recon_matrix)
    if k.shape[-2] != s.mask.shape[-1]:
        raise InputError(
            f"slice {s.slice_index}: phase-encode oversampling ({s.mask.shape[-1]} encoded lines, "
            f"{k.shape[-2]} recon lines) is not supported by line masks"
        )
    if maps is None:
        from recon.coils import estimate_maps

        maps = estimate_maps(s, method=coil_method, **coil_options)
    maps_t = torch.as_tensor(np.asarray(maps) if not torch.is_tensor(maps) else maps).to(torch.complex64)
    if tuple(maps_t.shape) != (k.shape[1],) + tuple(k.shape[-2:]):
        raise InputError(f"coil maps shape {tuple(maps_t.shape)} does not match k-space coils/grid "
                         f"{(k.shape[1],) + tuple(k.shape[-2:])}")
    return SliceProblem(
        kspace=torch.from_numpy(np.ascontiguousarray(k, dtype=np.complex64)).to(device),
        mask=torch.from_numpy(np.ascontiguousarray(s.mask)).to(device),
        maps=maps_t.to(device),
        noise_sigma=_scan_sigma(s),
    )


def _scan_sigma(s: SliceData) -> float | None:
    scan = s.extra.get(NOISE_SIGMA_KEY)
    return None if scan is None else check_sigma(scan, f"slice {s.slice_index}: noise sigma of the noise scan")
