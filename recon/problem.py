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
from recon.noise import NOISE_SIGMA_KEY, check_sigma, estimate_sigma
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
    """Per-coil k-space noise std of ``p``: ``p.noise_sigma``, else estimated from
    its calibration lines (:func:`recon.noise.estimate_sigma`; InputError when the
    mask has too few lines sampled in every frame)."""
    if p.noise_sigma is not None:
        return float(p.noise_sigma)
    return estimate_sigma(p.kspace, p.mask)


def slice_noise_sigma(s: SliceData, kspace: np.ndarray) -> float | None:
    """Noise std of a slice on the recon grid: from its noise scan when it carries one
    (``s.extra[NOISE_SIGMA_KEY]``, set by :func:`recon.io.raw.read_raw` and the chain),
    else estimated from ``kspace [t, c, y, x]`` (recon grid) and ``s.mask``; None when
    neither is possible. A noise-scan value that the data contradict by more than
    :data:`NOISE_DISAGREEMENT` is kept, and logged."""
    try:
        estimate = estimate_sigma(kspace, s.mask)
    except InputError as exc:
        log.info("slice %d: no noise estimate from the data (%s)", s.slice_index, exc)
        estimate = None
    scan = s.extra.get(NOISE_SIGMA_KEY)
    if scan is None:
        return estimate
    scan = check_sigma(scan, f"slice {s.slice_index}: noise sigma of the noise scan")
    if estimate is not None and scan > 0 and not 1 / NOISE_DISAGREEMENT <= estimate / scan <= NOISE_DISAGREEMENT:
        log.warning("slice %d: noise scan gives k-space noise std %.4g, the data %.4g; using the noise scan",
                    s.slice_index, scan, estimate)
    return scan


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

    The problem's ``noise_sigma`` comes from the slice's noise scan when it has one,
    else from the data (see :func:`slice_noise_sigma`).
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
        noise_sigma=slice_noise_sigma(s, k),
    )
