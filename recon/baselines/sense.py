"""CG-SENSE baseline: Tikhonov-regularised SENSE solved frame by frame (all frames at once)."""

from __future__ import annotations

from typing import Callable

import torch

from recon.errors import InputError
from recon.noise import auto_or_number, outer_signal_power
from recon.problem import SliceProblem, inconsistency_level, noise_level
from recon.sense import SenseOperator, cg_sense

#: Default Tikhonov weight: ``"auto"``, derived from the data by :func:`auto_lam`.
#: (Before, a constant 0.03 tuned on our simulator at SNR 40 was the default; on
#: low-noise data it over-regularised.)
DEFAULT_LAM = "auto"

#: Largest Tikhonov weight ``auto`` chooses (see :func:`auto_lam`).
MAX_LAM = 1.0
#: CG iterations. Early stopping regularises too: with ``auto`` at SNR 10 CG converges
#: in about 15 iterations; at SNR 300-1000 (weight ~1e-5) 100 iterations lose 1-5 dB
#: against 30 on our simulated cine (ESPIRiT map error amplified), so 30 stays.
DEFAULT_ITERATIONS = 30


def auto_lam(p: SliceProblem) -> float:
    """Tikhonov weight ``s^2 / P_outer`` from the measured inconsistency and signal (MAP / Wiener).

    For ``d = A x + n`` with white noise of per-sample variance ``sigma^2`` and a white
    Gaussian prior ``x ~ CN(0, P I)``, the posterior mean is
    ``argmin ||A x - d||^2 + (sigma^2 / P) ||x||^2``. ``A^H A`` has eigenvalues in
    ``[0, 1]`` (unit sum-of-squares maps, orthonormal FFT), so the weight needs no
    other scaling and is invariant to a global scale of the data.

    Which ``P``: the regulariser matters only for the components the data leave
    (nearly) undetermined, and with a fully sampled calibration block those are the
    unsampled outer k-space lines. Their prior variance is the power of the outer
    k-space, measured on the sampled outer lines between them
    (:func:`recon.noise.outer_signal_power`), not the mean image power ``mean |x|^2``,
    which the centre of k-space dominates (5-14x larger on our cine data). With
    ``mean |x|^2`` the weight came out 4-10x below the best of a grid at SNR 10-40
    (64-96 matrix, R = 4, true maps: 25.3 against 26.9 dB at SNR 10); with the outer
    power it is within 0.1 dB of it there. Measured by :mod:`crunet.bench.defaults`
    (ESPIRiT maps, 128 x 128, 12 phases; SCD0000401 is a real series as the simulator
    fits it, anatomy reaching the coils; ``pad 1.6`` the same series inside the coil
    ring), PSNR of ``auto`` minus the best of ``lam`` in {0, 1e-4, ..., 0.1} / minus
    the former 0.03, in dB::

        sunnybrook_SCD0000401:
            SNR    c8 R4          c8 R8          c15 R4         c15 R8
            10     +0.3 / +2.0    -0.4 / +1.2    +2.2 / +3.6    +1.9 / +4.7
            30     -0.0 / +1.9    +0.2 / +1.4    -0.4 / -0.4    +0.0 / +0.7
            100    -5.4 / -3.2    -5.8 / -4.7    -0.0 / -0.0    -1.0 / -1.0
            300    -7.6 / -5.3    -10.8 / -9.7   -0.3 / -0.3    -4.9 / -4.9
            1000   -7.9 / -5.6    -11.6 / -10.5  -0.3 / -0.3    -6.7 / -6.7
        sunnybrook_SCD0000401 pad 1.6:
            SNR    c8 R4          c8 R8          c15 R4         c15 R8
            10     -0.1 / +1.4    -0.3 / +0.8    +0.3 / +1.7    -0.2 / +1.6
            30     -0.9 / -0.9    -0.5 / -0.5    -1.0 / -1.0    -0.7 / -0.7
            100    +0.1 / +3.2    -0.2 / +1.7    -0.3 / +3.1    -0.4 / +2.3
            300    -0.5 / +5.3    -0.0 / +2.9    -0.0 / +8.8    -0.1 / +5.2
            1000   -0.8 / +5.5    -0.0 / +3.0    -0.0 / +11.1   -0.0 / +5.9
        phantom:
            SNR    c8 R4          c8 R8          c15 R4         c15 R8
            10     -0.5 / +0.2    -0.3 / -0.2    -1.2 / -1.2    -0.7 / -0.7
            30     -0.2 / +0.3    -0.4 / +0.6    -1.0 / +0.2    -1.0 / +0.7
            100    +0.0 / +5.0    -0.4 / +4.7    -0.4 / +5.0    -0.1 / +5.4
            300    -0.0 / +6.8    +0.1 / +7.2    -0.1 / +6.4    -1.2 / +5.3
            1000   -0.0 / +7.0    -0.1 / +7.4    -0.0 / +6.6    -1.6 / +5.1

    The table above used the noise alone as ``s``. At low noise the coil-map (model)
    error, not the noise, limits SENSE (the unpadded series at SNR >= 100 with 8 coils
    lost 5-12 dB), so ``s`` is now the *inconsistency* level
    (:func:`recon.problem.inconsistency_level`): the larger of the noise and what the
    calibration lines show the coil maps cannot explain, a measured quantity too.
    Measured on ``crunet validate`` cases (held-out patient; training-space and
    held-out acquisitions, R 4 and 8, ESPIRiT maps), PSNR in dB, noise-only auto /
    inconsistency auto / best of {0, 1e-4, ..., 0.3}: SNR 902 14 coils R4 34.08 /
    40.31 / 40.31, R8 28.52 / 38.35 / 38.26; SNR 100 8 coils R4 28.45 / 31.42 / 31.61,
    R8 26.55 / 29.91 / 30.01; SNR 276 22 coils R4 39.02 / 41.27 / 42.05, R8 35.29 /
    37.55 / 37.70. At image SNR 4 both over-regularise (lam 3-4 against a best 0.1:
    23.1 against 25.5 dB); the weight is capped at :data:`MAX_LAM` (beyond it the
    penalty outweighs the data even for fully determined components; lam 1 gives
    24.1 dB there).

    ``sigma`` : the problem's noise level (noise scan, else estimated from the
    calibration lines, :func:`recon.problem.noise_level`), for the noise power of the
    outer lines.
    """
    sigma = noise_level(p)
    if sigma == 0:
        return 0.0
    spread = inconsistency_level(p)
    return min(MAX_LAM, spread ** 2 / outer_signal_power(p.kspace, p.mask, sigma))


def resolve_lam(p: SliceProblem, lam: float | str) -> float:
    """``lam`` as a number: :func:`auto_lam` for ``"auto"``, else the number (>= 0, finite)."""
    value = auto_or_number(lam, "lam")
    return auto_lam(p) if value is None else value


def sense(
    p: SliceProblem,
    lam: float | str = DEFAULT_LAM,
    n_iter: int = DEFAULT_ITERATIONS,
    tol: float = 1e-6,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """CG-SENSE: ``argmin_x ||A x - d||^2 + lam ||x||^2`` per frame.

    Frames are independent (no temporal model): they are the batch axis of one call
    to :func:`recon.sense.cg_sense`, whose step sizes are per batch sample, so each
    frame runs its own CG (vectorised over frames).

    Parameters
    ----------
    p : slice problem: k-space ``[t, c, y, x]``, mask ``[t, y]``, maps ``[c, y, x]``.
    lam : Tikhonov weight: ``"auto"`` (default, :func:`auto_lam`: noise variance over
        signal power, both measured from the data) or a number >= 0 (dimensionless).
    n_iter : maximum CG iterations (early stopping also regularises).
    tol : relative residual at which CG stops early.
    progress : called as ``progress(iteration, n_iter)`` (1-based) after each iteration.

    Returns
    -------
    complex64 tensor ``[t, y, x]``.

    Raises
    ------
    InputError : ``lam`` negative, non-finite or other text than ``auto``; ``n_iter < 1``.
    """
    if n_iter < 1:
        raise InputError(f"n_iter must be >= 1, got {n_iter}")
    lam_value = resolve_lam(p, lam)
    kt, st, mt = _frames(p)
    callback = None
    if progress is not None:
        callback = lambda it, _x: progress(it + 1, n_iter)  # noqa: E731
    x = cg_sense(kt, st, mt, lam=lam_value, n_iter=int(n_iter), tol=tol, callback=callback)
    return x[:, 0]


def _frames(p: SliceProblem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``p`` with the frames as the batch axis: k ``[t, 1, c, y, x]``, maps ``[t, c, y, x]`` (one
    set per frame), mask ``[t, 1, y]``, complex64."""
    k, mask, maps = p.batched()
    kt = k[0].to(torch.complex64)[:, None]
    return kt, maps.to(torch.complex64).expand(kt.shape[0], *maps.shape[1:]), mask[0][:, None]


def sense_with_prior(p: SliceProblem, prior: torch.Tensor, lam: float | str | torch.Tensor = DEFAULT_LAM,
                     n_iter: int = DEFAULT_ITERATIONS, tol: float = 1e-6) -> torch.Tensor:
    """CG-SENSE around a prior image: ``argmin_x ||A x - d||^2 + lam ||x - prior||^2`` per frame.

    With ``prior = 0`` this is :func:`sense`. With a learned reconstruction as ``prior`` it is the
    exact data-consistency step of an unrolled network (MoDL's), which our cascades' k-space
    replacement only approximates with several coils: the coils' encoding is used to unfold what
    the prior got wrong, as far as ``lam`` lets it. Solved for ``x - prior`` from the residual
    ``d - A prior`` (:func:`recon.sense.cg_sense`, frames as the batch axis).

    Parameters
    ----------
    p : slice problem (as for :func:`sense`).
    prior : complex ``[t, y, x]``, the image the penalty pulls towards.
    lam : ``"auto"`` (:func:`auto_lam`, the Wiener weight of :func:`sense`), a number >= 0, or
        real per-pixel weights ``[y, x]`` (the penalty ``sum_p lam_p |x_p - prior_p|^2``; e.g.
        :func:`recon.refine.motion_weight`).
    n_iter, tol : CG iterations and relative-residual stop.

    Returns
    -------
    complex64 tensor ``[t, y, x]``.
    """
    if n_iter < 1:
        raise InputError(f"n_iter must be >= 1, got {n_iter}")
    kt, st, mt = _frames(p)
    prior = prior.to(kt.device, torch.complex64)
    if prior.shape != (kt.shape[0], *kt.shape[-2:]):
        raise InputError(f"prior must be [t, y, x] = {(kt.shape[0], *kt.shape[-2:])}, got {tuple(prior.shape)}")
    lam_value = lam if torch.is_tensor(lam) else resolve_lam(p, lam)
    residual = kt - SenseOperator(st, mt).forward(prior[:, None])
    return prior + cg_sense(residual, st, mt, lam=lam_value, n_iter=int(n_iter), tol=tol)[:, 0]
