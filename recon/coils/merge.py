"""One set of coil maps that carries ESPIRiT's second set where the object needs it.

Why: along the phase encodes the k-space is sampled, so the image is periodic; when the
object fills the field of view along y (the anatomy is cut by it, or folds over), the
coil images of the top and bottom edges meet across the periodic boundary, and there
the sensitivity jumps from the value at one edge to the value at the other. 24 ACS lines
cannot resolve that jump: the first ESPIRiT eigenvector smooths it away, and every
method that uses those maps (SENSE, L+S, the networks' data consistency) leaves errors
in the edge rows. There, each pixel's calibration matrix has two eigenvalues near 1
(ESPIRiT's two map sets, Uecker et al. 2014, "soft SENSE"). Measured on the validate
cases (held-out patient, R 8, full FOV PSNR): the edge rows (4 + 4 of 96-148) held 35-52 %
of crunet_ca's squared error on the held-out acquisitions, and 5-23 % of the pixels had a
second eigenvalue above the crop (0.8).

The networks and every other method take one map set. This module turns the two sets
into one, from the slice's own data: the time-averaged k-space (each line the mean over
the frames that sampled it, so the image is the static anatomy, where the edges are) is
reconstructed with both sets (Tikhonov-regularised CG over the two-set SENSE operator,
:func:`recon.cg.conjugate_gradient`), ``X_1``, ``X_2``; the merged map is

    ``S = w (S_1 X_1 + S_2 X_2) / ||S_1 X_1 + S_2 X_2||``

(norms over coils; ``w`` the larger of the two sets' crop weights), rotated per pixel so
that its projection on the first set is real and positive (the first set's phase
convention, so the images keep their phase). ``S_1 X_1 + S_2 X_2`` is the coil-image vector
the data imply at that pixel, so ``S`` is the direction of the sensitivity the data
show, with ESPIRiT's crop. (Dividing by ``|X|`` instead would shrink the map wherever the
second set's weight is small: there the regularised ``X_2`` is inflated by up to
``1 / (2 sqrt(lam))`` while ``S_2 X_2`` stays small.) Where the second set is cropped away
(weight 0) or the implied coil images are below ``floor`` of their maximum (background,
noise) or the second set's weight is below ``min_weight``, the map is the first set
unchanged; when fewer pixels than one row of the grid pass ``min_weight``, the first set is
returned without the reconstruction (``crunet bench --what coils``, idle, 2 threads, 10
coils: the first set 0.031 s at 128 x 128 and 0.048 s at 192 x 192, merged 0.093 s and
0.203 s, ``bart ecalib`` 0.22 s and 0.28 s; since then the two-set CG runs on plain FFTs with
the centring folded into the maps, measured in one process against the centred transforms:
0.077 -> 0.042 s at 128 x 128 x 10 coils, 0.26 -> 0.13 s at 192 x 192 x 15).
"""

from __future__ import annotations

import numpy as np
import torch

from recon.errors import InputError
from recon.fft import alternating_signs, fftc, ifft2c, ifftc
from recon.cg import conjugate_gradient
from recon.sense import reduce

__all__ = ["MERGE_FLOOR", "MERGE_ITERATIONS", "MERGE_LAMBDA", "MERGE_MIN_WEIGHT", "merge_sets"]

#: Tikhonov weight of the two-set reconstruction (dimensionless: maps of unit norm and
#: an orthonormal FFT make ``A^H A``'s eigenvalues at most 1, and the solution scales with
#: the data). On the held-out validate cases (R 8, exact per-pixel eigenvectors): 1e-3 against
#: 1e-2 gave CG-SENSE 37.76 against 37.34 dB, crunet_ca 40.31 against 40.41 (case by case -0.38 to
#: +0.32): the classical method's preference decided.
MERGE_LAMBDA = 1e-3
#: CG iterations of the two-set reconstruction.
MERGE_ITERATIONS = 30
#: Pixels whose implied coil images are below this fraction of their maximum keep the first set.
MERGE_FLOOR = 0.1
#: Only pixels whose second set has at least this crop weight are merged: two sensitivities
#: clearly share them. Lower thresholds let noise into the maps where a second eigenvalue
#: merely rises (the ISMRMRD Shepp-Logan file, 8 coils, noise 0.07: rel. RMS error against
#: the true maps 0.013 with the first set, 0.032 merging every pixel whose second weight is
#: above 0, 0.013 above 0.9); on the validate cases 0, 0.5 and 0.9 differ by <= 0.04 dB.
MERGE_MIN_WEIGHT = 0.9


def merge_sets(average, sampled, sets, lam: float = MERGE_LAMBDA, iterations: int = MERGE_ITERATIONS,
               floor: float = MERGE_FLOOR, min_weight: float = MERGE_MIN_WEIGHT):
    """One map set ``[c, y, x]`` from ESPIRiT's two and the slice's data (module docstring).

    Parameters
    ----------
    average : complex ``[c, y, x]``, the slice's time-averaged k-space on the maps' grid
        (:func:`recon.kspace.time_average`; zeros on lines no frame sampled); numpy or torch.
    sampled : bool ``[y]``, the lines some frame sampled.
    sets : complex ``[2, c, y, x]``, :func:`recon.coils.espirit.espirit_maps` with ``sets=2``.
    lam, iterations, floor, min_weight : see :data:`MERGE_LAMBDA`, :data:`MERGE_ITERATIONS`,
        :data:`MERGE_FLOOR`, :data:`MERGE_MIN_WEIGHT`.

    Returns
    -------
    complex64 ``[c, y, x]`` (numpy for numpy ``sets``, else torch): the first set wherever
    the second is zero.
    """
    was_numpy = isinstance(sets, np.ndarray)
    s = torch.as_tensor(np.ascontiguousarray(sets) if was_numpy else sets).to(torch.complex64)
    k = torch.as_tensor(np.ascontiguousarray(average) if isinstance(average, np.ndarray) else average)
    m = torch.as_tensor(np.asarray(sampled) if isinstance(sampled, np.ndarray) else sampled).to(torch.bool)
    if s.ndim != 4 or s.shape[0] != 2:
        raise InputError(f"map sets must be [2, coils, y, x], got shape {tuple(s.shape)}")
    if tuple(k.shape) != tuple(s.shape[1:]):
        raise InputError(f"time-averaged k-space {tuple(k.shape)} does not match the map sets {tuple(s.shape)} "
                         "([coils, y, x] on the maps' grid)")
    if tuple(m.shape) != (k.shape[1],):
        raise InputError(f"sampled-line mask {tuple(m.shape)} does not match the k-space's {k.shape[1]} lines")
    first, second = s[0], s[1]
    strong = second.abs().square().sum(0).sqrt() > min_weight  # [y, x]
    if int(strong.sum()) < strong.shape[-1]:
        # fewer such pixels than one row: no edge is cut (the cases this is for have 5-43 rows'
        # worth), and the merge would cost 3-4x the first set's time for nothing
        return first.numpy() if was_numpy else first
    with torch.no_grad():
        images = _two_set_cg(s, k.to(torch.complex64), m, lam, iterations)  # [2, y, x]
        raw = first * images[0] + second * images[1]  # the coil images the data imply, [c, y, x]
        norm = raw.abs().square().sum(0).sqrt()
        # unit direction, scaled like ESPIRiT's crop (the larger of the two sets' weights)
        weight = torch.maximum(first.abs().square().sum(0), second.abs().square().sum(0)).sqrt()
        # the first set's phase convention: <S_1, S> real and positive
        proj = (first.conj() * raw).sum(0)
        rot = torch.where(proj != 0, proj.sgn().conj(), torch.ones_like(proj))
        merged = raw * (rot * weight / norm.clamp_min(torch.finfo(norm.dtype).tiny))
        keep = (norm < floor * norm.max()) | ~strong
        out = torch.where(keep, first, merged).to(torch.complex64)
    return out.numpy() if was_numpy else out


def _two_set_cg(sets: torch.Tensor, k: torch.Tensor, sampled: torch.Tensor, lam: float,
                iterations: int) -> torch.Tensor:
    """``argmin ||M F (S_1 X_1 + S_2 X_2) - k||^2 + lam ||X||^2`` by CG: ``[2, y, x]``.

    sets ``[2, c, y, x]``, k ``[c, y, x]`` (zeros off ``sampled``), sampled bool ``[y]``. The
    pair is one CG system (the unknowns ride as one sample ``[1, 2, y, x]`` through
    :func:`recon.cg.conjugate_gradient`). The mask samples whole lines, so in the normal
    operator ``F^H M F`` the readout transforms cancel: only the phase-encode axis is transformed,
    on an even grid by plain FFTs with the centring signs folded into the maps
    (:func:`recon.fft.alternating_signs`).
    """
    ny, real = sets.shape[-2], k.real.dtype
    m = sampled.to(real)[:, None]  # [y, 1]
    if ny % 2 == 0:  # centring folded into the maps: plain FFTs along y (recon.fft.alternating_signs)
        maps = sets * alternating_signs(ny, real, sets.device)[:, None]

        def project(coil):  # F^H M F along y, [c, y, x]
            return torch.fft.ifft(torch.fft.fft(coil, dim=-2, norm="ortho").mul_(m), dim=-2, norm="ortho")
    else:
        maps = sets

        def project(coil):
            return ifftc(m * fftc(coil, dims=(-2,)), dims=(-2,))
    conj = maps.conj().resolve_conj()

    def normal(x):  # [1, 2, y, x]
        coil = project((maps[0] * x[0, 0]).addcmul_(maps[1], x[0, 1]))  # F^H M F (S_1 X_1 + S_2 X_2)
        return (conj * coil).sum(1)[None].add_(x, alpha=lam)  # S_s^H of it, each set

    maps5 = sets[None]  # [1, 2, c, y, x]: the sets on the frame axis of recon.sense's helpers
    coil = ifft2c(m * k)[None, None].expand(-1, 2, -1, -1, -1)
    return conjugate_gradient(normal, reduce(coil, maps5), n_iter=iterations, tol=0.0)[0]
