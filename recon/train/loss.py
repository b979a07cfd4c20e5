"""Training loss: k-space MSE + image MSE + image L1 + (1 - SSIM), as in CRUNet-MR.

The reference (github dong845/CRUNet, ``train_infer.py`` / ``losses.py``) computes,
on the coil-combined prediction ``p`` and target ``g`` (complex ``[b, t, y, x]``,
handled as real tensors ``[..., 2]`` = real and imaginary parts)::

    0.25 * MSE(fft2c(p), fft2c(g))                     # "k-space MSE"
  + 0.5  * (MSE(p, g) + L1(p, g))                      # image MSE and L1
  + 0.5  * ((1 - SSIM(Re p, Re g)) + (1 - SSIM(Im p, Im g)))

Every MSE / L1 is a mean over all real numbers (batch, frames, pixels, real and
imaginary parts). SSIM is the skimage-equivalent SSIM of every frame (7x7 uniform
window, K1 = 0.01, K2 = 0.03, :func:`recon.metrics.ssim_torch`), averaged over
frames and batch, once on the real parts and once on the imaginary parts.

What we compute is exactly that, with two stated choices:

- The k-space MSE is taken on the single "coil" k-space of the combined image, as in
  the reference. With the orthonormal FFT (:mod:`recon.fft`) Parseval makes it
  *equal* to the image MSE (same sum of squares, same element count): the default
  weights therefore amount to ``0.75 * image MSE``; the term is kept so that weights
  carry over from the reference, and a test checks the identity.
- SSIM needs a data range. The reference divides each image by its *own* maximum
  and uses data range 1. We divide prediction and target by the same number, the
  target's largest absolute real/imaginary value per sample (so the parts lie in
  [-1, 1]), and use data range 1: a wrong global scale of the prediction is then
  penalised instead of being normalised away.

One term of our own, off by default (weight 0): ``dynamic_mse``, the image MSE weighted per
pixel by the target's temporal standard deviation (:func:`dynamic_mse`), i.e. towards what
moves. The heart is 2-5 % of a cine's field of view, so the reference's terms are ruled by
the static body: on held-out acquisitions with a fixed mask crunet_ca's full-FOV PSNR led
L+S while L+S led it inside the moving heart on three of four paired scenes.

Weights come from :class:`recon.train.config.LossConfig` (0 switches a term off).
"""

from __future__ import annotations

import torch
from torch import nn

from recon.fft import fft2c
from recon.metrics import ssim_torch
from recon.train.config import LossConfig

TERMS = ("kspace_mse", "image_mse", "image_l1", "ssim", "dynamic_mse")


def kspace_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the centred orthonormal 2-D FFTs, over real and imaginary parts."""
    return (torch.view_as_real(fft2c(pred) - fft2c(target)) ** 2).mean()


def image_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real and imaginary parts."""
    return (torch.view_as_real(pred - target) ** 2).mean()


def image_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over real and imaginary parts (not the complex modulus)."""
    return torch.view_as_real(pred - target).abs().mean()


def dynamic_weights(target: torch.Tensor) -> torch.Tensor:
    """Per-pixel weights ``[b, 1, y, x]``: the temporal std of ``|target|`` (population, over
    ``t`` of complex ``[b, t, y, x]``) divided by its mean over the sample's pixels, so they
    average 1 per sample; a sample with no temporal change (or one frame) gets zeros."""
    s = target.detach().abs().std(dim=1, correction=0, keepdim=True)  # [b, 1, y, x]
    m = s.flatten(1).mean(dim=1).view(-1, 1, 1, 1)
    return torch.where(m > 0, s / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(s))


def dynamic_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Image MSE over real and imaginary parts, each pixel weighted by :func:`dynamic_weights`
    of the target (complex ``[b, t, y, x]``): equal to :func:`image_mse` where the temporal std
    is the same everywhere, concentrated on the moving pixels otherwise."""
    err = torch.view_as_real(pred - target).pow(2).sum(dim=-1) / 2  # [b, t, y, x], mean over re/im
    return (dynamic_weights(target) * err).mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """``(1 - SSIM(Re)) + (1 - SSIM(Im))``, SSIM averaged over frames and batch.

    pred, target: complex ``[b, t, y, x]`` (``[b, y, x]`` is one frame). Both are
    divided by the target's largest absolute real or imaginary value per sample; data
    range 1. A sample whose target is all zero (a training strip outside the coil
    maps' support) is divided by the prediction's largest value instead, or by 1 when
    that is zero too (dividing by ~0 made the loss NaN).
    """
    if pred.ndim == 3:
        pred, target = pred[:, None], target[:, None]
    p, g = torch.view_as_real(pred), torch.view_as_real(target)  # [b, t, y, x, 2]
    g_max = g.detach().abs().flatten(1).amax(dim=1)
    p_max = p.detach().abs().flatten(1).amax(dim=1)
    scale = torch.where(g_max > 0, g_max, torch.where(p_max > 0, p_max, torch.ones_like(p_max)))
    scale = scale.view(-1, 1, 1, 1, 1)
    p, g = p / scale, g / scale
    total = pred.new_zeros((), dtype=p.dtype)
    for part in (0, 1):
        a = p[..., part].flatten(0, 1)  # [b * t, y, x]
        b = g[..., part].flatten(0, 1)
        total = total + (1.0 - ssim_torch(a, b, data_range=1.0, win_size=win_size).mean())
    return total


class ReconLoss(nn.Module):
    """Weighted sum of the terms above; ``forward`` returns ``(total, {term: value})``.

    Terms with weight 0 are not computed (their value is reported as 0).
    """

    def __init__(self, cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg or LossConfig()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """pred, target: complex ``[b, t, y, x]``."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        c = self.cfg
        fns = {
            "kspace_mse": (c.kspace_mse, kspace_mse),
            "image_mse": (c.image_mse, image_mse),
            "image_l1": (c.image_l1, image_l1),
            "ssim": (c.ssim, lambda p, g: ssim_loss(p, g, c.ssim_window)),
            "dynamic_mse": (c.dynamic_mse, dynamic_mse),
        }
        terms: dict[str, torch.Tensor] = {}
        total = pred.real.new_zeros(())
        for name, (weight, fn) in fns.items():
            if weight == 0:
                terms[name] = pred.real.new_zeros(())
                continue
            value = fn(pred, target)
            terms[name] = value.detach()
            total = total + weight * value
        return total, terms
