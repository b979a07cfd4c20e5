"""Temporal total variation by BART (``bart pics -R T``): the field's usual compressed-sensing
reference for cine, run as an external tool on the problem's k-space and coil maps.

BART (github mrirecon/bart; Debian/Ubuntu package ``bart``) is not a Python dependency:
without it the method is an :class:`recon.errors.InputError` naming the package, so a
chain or an evaluation that asks for it fails that slice with a clear message. Our own
k-space, mask and maps go in (:func:`recon.coils.bart_io.bart_pics`), so only the
regulariser differs from ``sense`` and ``lps``.
"""

from __future__ import annotations

import torch

from recon.errors import InputError
from recon.problem import SliceProblem
from recon.sense import expand_mask

#: BART's own weight convention (after its scaling of the data): ``-R T:1024:0:0.01``.
DEFAULT_LAM = 0.01
DEFAULT_ITERATIONS = 50
#: BART's time axis flag (dimension 10): ``1 << 10``.
TIME_FLAG = 1024


def bart_tv(p: SliceProblem, lam: float = DEFAULT_LAM, iterations: int = DEFAULT_ITERATIONS) -> torch.Tensor:
    """``bart pics -R T:1024:0:<lam> -i <iterations>``: SENSE with a total-variation penalty along time.

    Parameters
    ----------
    p : slice problem: k-space ``[t, c, y, x]`` (zeros where not sampled: BART reads the
        sampling pattern from them), maps ``[c, y, x]``; even ``y`` and ``x`` (BART centres odd
        axes differently from :mod:`recon.fft`).
    lam : the TV weight in BART's convention (> 0).
    iterations : BART's iterations (>= 1).

    Returns
    -------
    complex64 tensor ``[t, y, x]`` on the problem's device.
    """
    from recon.coils.bart_io import bart_pics

    if not lam > 0:
        raise InputError(f"bart_tv: lam must be > 0, got {lam}")
    if iterations < 1:
        raise InputError(f"bart_tv: iterations must be >= 1, got {iterations}")
    k, mask, maps = p.batched()
    k = (k * expand_mask(mask).to(k.dtype))[0]  # zeros exactly where the mask says unsampled
    out = bart_pics(k.cpu().numpy(), maps[0].cpu().numpy(), regularisation=f"T:{TIME_FLAG}:0:{lam:g}",
                    iterations=int(iterations))
    return torch.from_numpy(out["frames"]).to(p.kspace.device)
