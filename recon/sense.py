"""SENSE operators, data consistency (hard, or weighted by the noise) and a conjugate-gradient SENSE solver.

Shapes (batched, torch complex tensors):

* images ``x``: ``[b, t, y, x]``
* k-space ``k``: ``[b, t, c, y, x]`` (centred, recon grid)
* coil maps ``S``: ``[b, c, y, x]`` (one set for all frames, time-averaged
  calibration) or ``[b, t, c, y, x]``
* masks ``M``: ``[b, t, y]`` (line masks), ``[b, t, y, x]``, or anything that
  broadcasts to ``[b, t, 1, y, x]``; boolean or 0/1 real.

Forward ``A x = M F (S x)``, adjoint ``A^H k = sum_c conj(S_c) F^H (M k)``
(docs/design.md §3), with the project's centred orthonormal FFT.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable

import torch

from recon.cg import conjugate_gradient
from recon.coilops import expand, expand_mask, line_mask, maps5 as _maps5, reduce
from recon.errors import InputError
from recon.fft import centring_signs, fft2c, ifft2c
from recon.kspace import time_average
from recon.line_normal import NORMAL_FORMS, LineNormal, NormalForm


class SenseOperator:
    """``A = M F S`` for fixed maps and mask (a linear operator with its adjoint).

    Parameters
    ----------
    maps : complex ``[b, c, y, x]`` or ``[b, t, c, y, x]``.
    mask : ``[b, t, y]``, ``[b, t, y, x]`` or 5D (see :func:`expand_mask`).
    normal_form : how :meth:`normal` computes ``A^H A``: ``auto`` (the default: the cheapest
        form that applies, :meth:`recon.line_normal.LineNormal.choose`), ``fft``, or one of the
        line-mask forms ``rows`` / ``columns`` (:mod:`recon.line_normal`; an InputError where
        they do not apply). All give the same operator to rounding.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor, normal_form: NormalForm = "auto"):
        if normal_form not in NORMAL_FORMS:
            raise InputError(f"normal_form must be one of {', '.join(NORMAL_FORMS)}, got {normal_form!r}")
        self.maps = _maps5(maps)
        self.mask = expand_mask(mask).to(maps.real.dtype if maps.is_complex() else maps.dtype)
        if self.maps.shape[-2:] != self.mask.shape[-2:] and self.mask.shape[-1] != 1:
            raise InputError(f"maps {tuple(maps.shape)} and mask {tuple(mask.shape)} grids differ")
        self.normal_form = normal_form
        problem = LineNormal.unsupported(self.maps, self.mask) if normal_form in ("rows", "columns") else None
        if problem is not None:
            raise InputError(f"normal_form {normal_form!r} needs {problem}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, t, y, x]`` -> ``[b, t, c, y, x]``."""
        return self.mask * fft2c(expand(x, self.maps))

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        """``[b, t, c, y, x]`` -> ``[b, t, y, x]``."""
        return reduce(ifft2c(self.mask * k), self.maps)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` (the mask is 0/1, so ``M^H M = M``): with a line mask on the CPU, without
        FFTs (:mod:`recon.line_normal`: 2.8-5x faster than them at 10 coils and R 8); else
        ``S^H F^H M F S x``."""
        lines = self._line_normal
        if lines is None or tuple(x.shape[:2]) != tuple(self.mask.shape[:2]) or x.dtype != self.maps.dtype:
            return reduce(ifft2c(self.mask * fft2c(expand(x, self.maps))), self.maps)
        return lines(x)

    @property
    def normal_form_used(self) -> str:
        """The form :meth:`normal` computes ``A^H A`` in for images of the mask's shape: ``fft``,
        ``rows`` or ``columns`` (with ``auto``, what :meth:`LineNormal.choose` picks; nothing is built)."""
        if self.normal_form != "auto":
            return self.normal_form
        return LineNormal.choose(self.maps, self.mask) or "fft"

    @cached_property
    def _line_normal(self) -> LineNormal | None:
        """The line-mask form of :meth:`normal`, or None (the FFTs); built at its first call."""
        form = self.normal_form_used
        return None if form == "fft" else LineNormal(self.maps, self.mask, form)

    __call__ = forward


def data_consistency(x: torch.Tensor, k0: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """k-space data consistency in image space, hard or weighted.

    Hard (``weight`` None): ``x_dc = S^H F^H [ (1 - M) F S x + M k0 ]``: expand to
    coils, replace the sampled k-space locations by the measurement
    ``k0 [b, t, c, y, x]``, transform back and combine. With maps of unit
    sum-of-squares, sampled k-space of ``F S x_dc`` equals ``k0`` wherever ``S S^H``
    acts as identity on the data (exactly so for a single coil of unit modulus).

    Weighted (``weight`` ``w``, real, broadcasting against ``[b, t, c, y, x]``, in
    ``(0, 1]``): the sampled locations become ``(1 - w) F S x + w k0``, the
    minimum-variance mix of an estimate and a measurement whose error variances are in
    the ratio ``w : 1 - w`` (:func:`noise_weight`); ``w = 1`` is the hard case.
    """
    m = expand_mask(mask).to(x.real.dtype)
    k = fft2c(expand(x, maps))
    if weight is None:
        k = k.mul_(1 - m).addcmul_(m, k0)  # in place on the transform's new array: no further copies
    else:
        k = k.mul_(1 - weight * m).addcmul_(weight * m, k0)
    return reduce(ifft2c(k), maps)


def noise_weight(tau: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Weight of the measurement in weighted data consistency: ``tau^2 / (tau^2 + sigma^2)``.

    ``tau``: the k-space error std of the estimate; ``sigma``: the measurement's noise std
    (both per coil and sample, in the same units, broadcasting). ``sigma = 0`` gives 1,
    hard data consistency: the noise-free case.
    """
    t2 = tau * tau
    return t2 / (t2 + sigma * sigma)


class DataConsistency:
    """:func:`data_consistency` for fixed measured data, maps and mask, applied many times
    (once per cascade of an unrolled network).

    k0 : complex ``[b, t, c, y, x]``, measured k-space (zeros where not sampled).
    maps : complex ``[b, c, y, x]`` or ``[b, t, c, y, x]``.
    mask : ``[b, t, y]``, ``[b, t, y, x]`` or 5D (0/1).

    On an even grid the centred FFT's sign modulation (:func:`recon.fft.centring_signs`)
    is folded once into the maps (``c s S``) and the data (``s M k0``): then
    ``S^H F^H [(1 - M) F S x + M k0] = (c s S)^H fft2^-1 [(1 - M) fft2((c s S) x) + s M k0]``
    (``s^2 = c^2 = 1``) needs plain FFTs, and every call skips the four sign products of
    the two centred transforms. Odd grids use :func:`data_consistency` as is.

    Where the normal operator's column form pays (``normal_form="auto"``, a line mask on the CPU:
    :meth:`recon.line_normal.LineNormal.choose`), no FFT at all: ``S^H F^H (1 - M) F S = P - A^H A``
    with ``P = sum_c |S_c|^2`` per pixel, so the step is ``P x - w A^H A x + w A^H k0`` (``w`` = 1, or
    a weight constant over coils and k-space: per sample or frame), ``A^H k0`` computed once.
    Measured (crunet_ca's network alone, 128 x 128, 12 frames, 10 coils, R 8, one process, median
    of 4): 0.97x the FFT form's time on 1 thread, 0.91x on 2. A mask whose frames each have their
    own lines (shifted) keeps the FFTs: streaming one matrix set per frame group costs more (128 x 128,
    12 frames in 12 groups, 10 coils, 2 threads: 25.2 ms per application against the FFTs' 14.0 ms,
    and 137 ms to build). ``normal_form="fft"`` keeps the FFTs.
    """

    def __init__(self, k0: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, normal_form: str = "auto"):
        if normal_form not in ("auto", "fft"):
            raise InputError(f"normal_form must be auto or fft, got {normal_form!r}")
        ny, nx = k0.shape[-2:]
        self.mask = expand_mask(mask).to(k0.real.dtype)
        self.columns = None
        if normal_form == "auto" and LineNormal.choose(_maps5(maps), self.mask) == "columns":
            self.columns = LineNormal(_maps5(maps), self.mask, "columns")
            self.power = _maps5(maps).abs().square().sum(2)  # P [b, tm, y, x]
            self.adjoint_data = reduce(ifft2c(self.mask * k0), maps)  # A^H k0 [b, t, y, x]
        # the FFT form's folded data only where it is the form used (else its rare fallbacks take
        # data_consistency as is)
        self.folded = self.columns is None and not (ny % 2 or nx % 2)
        if self.folded:
            cs = centring_signs(ny, nx, k0.real.dtype, k0.device)  # c s; cs[0, 0] = c
            self.maps = _maps5(maps) * cs
            self.k0 = (self.mask * k0) * (cs * cs[0, 0])
            self.keep = 1 - self.mask
        else:
            self.maps, self.k0 = maps, k0

    def __call__(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``x [b, t, y, x]`` -> its data-consistent version, same shape; hard, or weighted
        by ``weight`` (see :func:`data_consistency`)."""
        lines = self.columns
        if (lines is not None and x.dtype == lines.dtype and tuple(x.shape[:2]) == tuple(self.mask.shape[:2])
                and (weight is None or all(n == 1 for n in weight.shape[2:]))):
            normal = lines(x)
            if weight is None:
                return self.power * x - normal + self.adjoint_data
            w = weight.reshape(*weight.shape[:2], 1, 1)
            return self.power * x + w * (self.adjoint_data - normal)
        if not self.folded:
            return data_consistency(x, self.k0, self.maps, self.mask, weight)
        k = torch.fft.fft2(expand(x, self.maps), norm="ortho")
        if weight is None:
            k = k.mul_(self.keep).add_(self.k0)
        else:  # k0 is zero off the mask: (1 - w M) k + w k0
            k = k.mul_(1 - weight * self.mask).add_(weight * self.k0)
        return reduce(torch.fft.ifft2(k, norm="ortho"), self.maps)


class TemporalMeanConsistency:
    """Fills the temporal mean of a cine's k-space from the frames that sampled each line.

    ``k0``: complex ``[b, t, c, y, x]`` measured k-space (zeros where not sampled); ``maps``:
    ``[b, c, y, x]``; ``mask``: ``[b, t, y]`` (bool or 0/1). On each line that some frames
    sampled and others did not (a lattice that moves from frame to frame), the line's mean over
    the frames that sampled it (:func:`recon.kspace.time_average`) is taken as its mean over all
    frames: exact for what does not move, view sharing's assumption for what does. Calling the
    object on images ``x [b, t, y, x]`` adds ``A^H (k_mean - A mean_t(x))`` to every frame (``A``:
    SENSE on those lines), so the frames get that mean on those lines and keep their differences
    from it. Lines every frame sampled (the ACS, a mask that is the same in every frame) are left
    to the frames' own data consistency: a second data-consistency step on their mean adds
    nothing new and, measured at R = 24, costs 0.3-0.9 dB. So on a fixed mask ``x`` is returned
    unchanged.
    """

    def __init__(self, k0: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor):
        if maps.ndim != 4:
            raise InputError(f"temporal mean consistency needs one set of maps [b, c, y, x], got {tuple(maps.shape)}")
        lines = line_mask(mask)
        self.mean, sampled = time_average(k0, lines)
        self.count = lines.sum(1).to(k0.real.dtype)  # [b, y]: frames that sampled each line
        self.lines = sampled & ~lines.all(1)  # [b, y]: sampled by some frames, not by all
        self.active = bool(self.lines.any())  # once here, not at every cascade's call
        self.op = SenseOperator(maps, self.lines[:, None])

    def weight(self, tau: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Per-line weight ``[b, 1, 1, y, 1]`` of the measured mean against an estimate of k-space
        error std ``tau``: :func:`noise_weight` with the mean's noise, ``sigma / sqrt(count)``
        (``sigma`` per slice, broadcasting against ``[b, 1, 1, 1, 1]``)."""
        return noise_weight(tau, sigma / self.count.clamp_min(1).sqrt()[:, None, None, :, None])

    def __call__(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``x [b, t, y, x]`` -> the same frames with the measured temporal mean on :attr:`lines`
        (``weight`` None), or moved by ``weight`` (:meth:`weight`) of the way towards it."""
        if not self.active:
            return x
        step = self.mean[:, None] - self.op.forward(x.mean(1, keepdim=True))
        return x + self.op.adjoint(step if weight is None else weight * step)


class CGConsistency:
    """MoDL's data consistency for fixed data, maps and mask: ``x = argmin ||A x - k0||^2 + lam ||x - z||^2``
    around an estimate ``z``, by a fixed number of conjugate-gradient steps (differentiable, so an
    unrolled network trains through it).

    Where :class:`DataConsistency` replaces each coil's sampled k-space on its own, this uses the
    coils' joint encoding: what ``z`` got wrong on the missing lines is partly unfolded from the
    sampled ones, as SENSE does. ``lam`` is the trust in ``z`` relative to the data: with maps of
    unit sum-of-squares and a 0/1 mask ``A^H A`` has eigenvalues in ``[0, 1]``, so ``lam`` is on
    that scale (``lam -> inf`` keeps ``z``; ``lam = 0`` is ``iterations`` steps of unregularised
    SENSE started at ``z``).

    k0 : complex ``[b, t, c, y, x]`` (zeros where not sampled); maps ``[b, c, y, x]`` or
    ``[b, t, c, y, x]``; mask as :class:`SenseOperator`; iterations >= 1.
    """

    def __init__(self, k0: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, iterations: int):
        if iterations < 1:
            raise InputError(f"CG data consistency needs >= 1 iteration, got {iterations}")
        self.op = SenseOperator(maps, mask)
        self.rhs = self.op.adjoint(k0)  # A^H k0, once
        self.iterations = int(iterations)
        ny, nx = k0.shape[-2:]
        self.folded = not (ny % 2 or nx % 2)
        if self.folded:  # A^H A = (c s S)^H fft2^-1 M fft2 (c s S): the centring signs folded into the maps once
            self.maps = self.op.maps * centring_signs(ny, nx, k0.real.dtype, k0.device)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``; on an even grid with plain FFTs (see ``__init__``)."""
        if not self.folded:
            return self.op.normal(x)
        k = torch.fft.fft2(expand(x, self.maps), norm="ortho").mul_(self.op.mask)
        return reduce(torch.fft.ifft2(k, norm="ortho"), self.maps)

    def __call__(self, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """``z [b, t, y, x]`` -> ``z + d``, ``(A^H A + lam) d = A^H (k0 - A z)`` after ``iterations`` CG steps;
        ``lam``: real, ``>= 0``, one per sample ``[b]`` (or anything reshaping to it) or a number."""
        lam = torch.as_tensor(lam, dtype=z.real.dtype, device=z.device).reshape(-1, *(1,) * (z.ndim - 1))
        normal = self.normal
        return z + conjugate_gradient(lambda v: normal(v) + lam * v, self.rhs - normal(z),
                                      n_iter=self.iterations, tol=0.0)


def data_consistency_kspace(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard replacement on multi-coil k-space: ``(1 - M) k + M k0``."""
    m = expand_mask(mask).to(k.real.dtype)
    return (1 - m) * k + m * k0


def cg_sense(
    k: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float | torch.Tensor = 0.0,
    n_iter: int = 20,
    tol: float = 1e-6,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    normal_form: NormalForm = "auto",
) -> torch.Tensor:
    """CG-SENSE: solve ``(A^H A + diag(lam)) x = A^H k`` per batch sample.

    Parameters
    ----------
    k : measured k-space ``[b, t, c, y, x]`` (zeros where not sampled).
    maps, mask : as for :class:`SenseOperator`.
    lam : Tikhonov weight (>= 0): a number, or real per-pixel weights broadcastable to the
        images ``[b, t, y, x]`` (e.g. ``[y, x]``), each >= 0 and finite.
    n_iter : maximum CG iterations; ``tol`` stops early on the relative residual.
    x0 : starting images ``[b, t, y, x]`` (default zeros).
    callback : called as ``callback(iteration, x)`` after every iteration.
    normal_form : how ``A^H A`` is computed (:class:`SenseOperator`; the same result to rounding).

    Returns
    -------
    Images ``[b, t, y, x]``.
    """
    if torch.is_tensor(lam):
        if lam.is_complex() or not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
            raise InputError("per-pixel lam must be real, finite and >= 0 everywhere")
        lam = lam.to(k.device, k.real.dtype)
    elif lam < 0:
        raise InputError(f"lam must be >= 0, got {lam}")
    op = SenseOperator(maps, mask, normal_form)
    weighted = torch.is_tensor(lam) or lam
    normal = (lambda v: op.normal(v) + lam * v) if weighted else op.normal
    return conjugate_gradient(normal, op.adjoint(k), n_iter=n_iter, tol=tol, x0=x0, callback=callback)


def composite_image(k: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor, mode: str = "average") -> torch.Tensor:
    """A composite image ``[b, t, y, x]`` of k-space ``[b, t, c, y, x]`` sampled on ``mask [b, t, y]``
    (``mode`` as :attr:`recon.models.config.CRUNetConfig.composite_input`): ``average``, the SENSE
    adjoint of the time-averaged k-space (:func:`recon.kspace.time_average`) on the lines some
    frame sampled, the same in every frame; ``missing``, each frame's adjoint on the lines that
    frame did not sample only (zero where every frame has the same lines); ``nearest``, as
    ``missing`` with each such line from the frames nearest in circular time that sampled it
    (ties averaged) instead of the mean over all of them."""
    if mode not in ("average", "missing", "nearest"):
        raise InputError(f"composite mode must be average, missing or nearest, got {mode!r}")
    lines = line_mask(mask)
    average, sampled = time_average(k, lines)
    if mode == "average":
        image = SenseOperator(maps, sampled[:, None]).adjoint(average[:, None])
        return image.expand(-1, k.shape[1], -1, -1)
    fill = nearest_lines(k, lines) if mode == "nearest" else average[:, None].expand_as(k)
    return SenseOperator(maps, sampled[:, None] & ~lines).adjoint(fill)


def nearest_lines(k: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
    """k-space ``[b, t, c, y, x]`` with every line of every frame taken from the frames nearest
    in circular time that sampled it (``lines`` bool ``[b, t, y]``; ties averaged; zero where
    no frame did)."""
    t = k.shape[1]
    idx = torch.arange(t, device=k.device)
    d = (idx[:, None] - idx[None, :]).abs()
    d = torch.minimum(d, t - d)  # [t, s]
    dist = torch.where(lines[:, None], d[None, :, :, None], t + 1)  # [b, t, s, y]
    w = (dist == dist.min(2, keepdim=True).values) & (dist <= t)
    w = w.to(k.real.dtype) / w.sum(2, keepdim=True).clamp_min(1)
    return torch.einsum("btsy,bscyx->btcyx", w.to(k.dtype), k)
