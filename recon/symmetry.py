"""Exact symmetries of a slice problem: reflections in space and the reversal of time.

A reflection of the image about the centre index ``n // 2`` of an axis (the index of
the DC sample, :mod:`recon.fft`) is the same reflection of k-space along that axis:
``fftc(reflect(x)) == reflect(fftc(x))`` for odd and even ``n``. Reflecting the
k-space, the sampling mask and the coil maps of a :class:`recon.problem.SliceProblem`
therefore gives the problem of the reflected object, measured by the reflected coils
on the reflected lines, with the same noise; reversing the frames gives the problem
of the cine played backwards. A reconstruction ``R`` that is exact for the physics
(zero-filling, SENSE, data consistency) commutes with these maps:
``R(g p) = g R(p)``. A trained network does so only approximately (its training
data held every orientation and both directions of time,
:func:`recon.train.samples.augment_series`), and averaging ``g^-1 R(g p)`` over the
maps (test-time augmentation, :func:`recon.inference.learned`'s ``tta``) removes
the part of its error that does not commute.

The maps form a group of order 8 (``time``, ``y``, ``x``, each an involution);
:data:`TTA_SETS` lists the subsets used by ``tta = 1, 2, 4, 8``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recon.problem import SliceProblem


def reflect(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` reflected along ``dim`` about index ``n // 2``: ``out[i] = x[(2 (n // 2) - i) mod n]``."""
    n = x.shape[dim]
    out = x.flip(dim)
    return torch.roll(out, 1, dims=dim) if n % 2 == 0 else out


@dataclass(frozen=True)
class Symmetry:
    """One element of the group: reverse the frames (``time``), reflect along y and/or x."""

    time: bool = False
    y: bool = False
    x: bool = False

    def apply(self, x: torch.Tensor, t: int | None, y: int | None, x_dim: int | None) -> torch.Tensor:
        """The map on a tensor whose frame, y and x axes are ``t``, ``y``, ``x_dim`` (None: no such axis)."""
        if self.time and t is not None:
            x = x.flip(t)
        if self.y and y is not None:
            x = reflect(x, y)
        if self.x and x_dim is not None:
            x = reflect(x, x_dim)
        return x

    def problem(self, p: SliceProblem) -> SliceProblem:
        """The transformed problem (k-space ``[t, c, y, x]``, mask ``[t, y]``, maps ``[c, y, x]``)."""
        return SliceProblem(self.apply(p.kspace, 0, -2, -1), self.apply(p.mask, 0, -1, None),
                            self.apply(p.maps, None, -2, -1), p.noise_sigma)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """The same map on images ``[t, y, x]`` (each map is its own inverse)."""
        return self.apply(x, 0, -2, -1)


#: The group elements averaged by ``tta = n``: the identity and time reversal (the map a
#: network recurrent over the frames is least likely to commute with), then the reflection
#: along the readout, then that along the phase encodes.
TTA_SETS: dict[int, tuple[Symmetry, ...]] = {
    1: (Symmetry(),),
    2: (Symmetry(), Symmetry(time=True)),
    4: (Symmetry(), Symmetry(time=True), Symmetry(x=True), Symmetry(time=True, x=True)),
    8: tuple(Symmetry(t, y, x) for t in (False, True) for y in (False, True) for x in (False, True)),
}
