"""The per-pixel weight of the CG-SENSE step after a learned reconstruction, from measured quantities.

The step (option ``refine`` of a learned method, :func:`recon.inference.learned`) solves, per frame,
``argmin_x ||A x - d||^2 + sum_p lam_p |x_p - z_p|^2`` around the network's images ``z``
(:func:`recon.baselines.sense.sense_with_prior`). Read as a MAP estimate, with k-space noise of
std ``s`` and a Gaussian prior around ``z`` whose variance ``tau_p^2`` is the network's expected
error at pixel ``p``, the weight is ``lam_p = s^2 / tau_p^2``. :func:`motion_weight` takes

* ``s``: the slice's inconsistency level (:func:`recon.problem.inconsistency_level`: the noise
  level, or what the calibration lines show the coil maps cannot explain where that is larger;
  at low noise the map error, not the noise, limits what the data can correct);
* ``tau_p^2 = STATIC^2 P + MOVING^2 v_p``: ``P`` the network images' mean power and ``v_p`` their
  temporal variance at ``p`` averaged over a ``WINDOW x WINDOW`` neighbourhood (periodic edges):
  the network's error is largest where the object moves (the heart: its learned prior smooths the
  motion), smallest in the static anatomy, where it is good;
* ``lam_p = s^2 / tau_p^2 + FLOOR``: the floor keeps the step from fitting the data where even
  the inconsistency level understates what the maps get wrong.

So where nothing moves the data pull little and the network's images stay; where the image
changes from frame to frame the coils' encoding corrects them as far as the data are clean.
With a single uniform weight (``refine=auto`` or a number) the step helped the heart but cost
the static anatomy on other cases. How the constants were chosen, and what they give on
held-out data: the module docstring of :mod:`recon.inference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recon.errors import InputError
from recon.noise import noise_estimate_problem
from recon.problem import SliceProblem, inconsistency_level

#: Relative rms error of the network's images in the static anatomy (``tau`` where nothing moves,
#: as a fraction of the images' rms). Chosen with MOVING and FLOOR on the training-acquisition cases of
#: ``crunet validate`` (the module docstring of :mod:`recon.inference`); WINDOW was not varied.
STATIC = 0.03
#: The network's expected error per unit of the images' local temporal std.
MOVING = 1.0
#: Smallest weight of the prior (dimensionless, as SENSE's Tikhonov weight).
FLOOR = 0.01
#: Side of the square neighbourhood over which the temporal variance is averaged (pixels, odd).
WINDOW = 5


def temporal_variance(x: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """The variance over frames of complex images ``[t, y, x]`` at each pixel, averaged over a
    ``window x window`` neighbourhood with periodic edges -> real ``[y, x]``."""
    if x.dim() != 3:
        raise InputError(f"images must be [t, y, x], got shape {tuple(x.shape)}")
    if window < 1 or window % 2 == 0:
        raise InputError(f"window must be an odd number >= 1, got {window}")
    var = (x - x.mean(0, keepdim=True)).abs().pow(2).mean(0)
    if window == 1:
        return var
    h = window // 2
    padded = F.pad(var[None, None], (h, h, h, h), mode="circular")
    return F.avg_pool2d(padded, window, stride=1)[0, 0]


def motion_skip_reason(p: SliceProblem) -> str | None:
    """Why :func:`motion_weight` cannot be computed for ``p`` (no noise scan, and too few lines
    sampled in every frame to estimate the noise from), or None when it can; from the shapes and
    the mask alone, so that a reconstruction can say before it runs whether it will refine."""
    if p.noise_sigma is not None:
        return None
    _, c, _, nx = p.kspace.shape
    return noise_estimate_problem(p.mask, c, nx)


def motion_weight(p: SliceProblem, z: torch.Tensor, static: float = STATIC, moving: float = MOVING,
                  floor: float = FLOOR, window: int = WINDOW) -> torch.Tensor:
    """Per-pixel weight ``[y, x]`` of the prior ``z`` (the network's images ``[t, y, x]``) for
    :func:`recon.baselines.sense.sense_with_prior` (module docstring)."""
    for name, value, low in (("static", static, 0.0), ("moving", moving, 0.0), ("floor", floor, 0.0)):
        if not (value >= low and value < float("inf")):
            raise InputError(f"{name} must be a finite number >= {low}, got {value!r}")
    if static == 0 and moving == 0:
        raise InputError("static and moving cannot both be 0 (the prior would have no variance)")
    z = z.to(torch.complex64)
    s2 = inconsistency_level(p) ** 2
    power = float(z.abs().pow(2).mean())
    tau2 = static ** 2 * power + moving ** 2 * temporal_variance(z, window)
    tiny = torch.finfo(torch.float32).tiny
    return s2 / tau2.clamp_min(tiny) + floor
