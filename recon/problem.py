"""One slice as a reconstruction problem: k-space, mask and coil maps on the recon grid.

Every method (classical or learned) starts from a :class:`SliceProblem`, built
from a :class:`recon.slicedata.SliceData` by :func:`prepare`, so readout
oversampling removal and coil estimation happen in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.errors import InputError
from recon.kspace import to_recon_grid
from recon.slicedata import SliceData


@dataclass
class SliceProblem:
    """Tensors of one slice (no batch axis).

    kspace : complex64 ``[t, c, y, x]``, recon grid, zeros where not sampled.
    mask : bool ``[t, y]``, sampled phase-encode lines per frame.
    maps : complex64 ``[c, y, x]``, coil sensitivities (unit sum-of-squares in the support).
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.kspace.shape)  # type: ignore[return-value]

    def to(self, device: str | torch.device) -> "SliceProblem":
        return SliceProblem(self.kspace.to(device), self.mask.to(device), self.maps.to(device))

    def batched(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(k [1, t, c, y, x], mask [1, t, y], maps [1, c, y, x])`` for the batched operators."""
        return self.kspace[None], self.mask[None], self.maps[None]


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
    )
