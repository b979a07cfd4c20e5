"""DISTS image-quality metric (Ding et al. 2020), without torchvision and without downloads.

DISTS ("Image Quality Assessment: Unifying Structure and Texture Similarity", IEEE TPAMI
2020) compares two images through the feature maps of an ImageNet VGG16 whose max
pooling is replaced by L2 pooling. For every channel of six feature sets (the RGB image
itself and the outputs of the stages ending at relu1_2, relu2_2, relu3_3, relu4_3,
relu5_3: 3 + 64 + 128 + 256 + 512 + 512 = 1475 channels) it takes a texture term
``S1 = (2 mx my + c1) / (mx^2 + my^2 + c1)`` from the spatial means and a structure term
``S2 = (2 cov + c2) / (vx + vy + c2)`` from the spatial (co)variances, c1 = c2 = 1e-6, and

    DISTS = 1 - sum_k (alpha_k S1_k + beta_k S2_k) / (sum alpha + sum beta).

This follows the authors' implementation (PyPI ``DISTS_pytorch`` 0.1, ``DISTS_pt.py``):

- VGG16 ``features`` layers 0-29 (13 3x3 convolutions + ReLU); the max pools at indices
  4, 9, 16, 23 are replaced by L2 pooling ``sqrt(conv(x^2, g) + 1e-12)`` per channel, with
  ``g`` the outer product of a 5-tap Hann window without its zero end taps
  (``[0.5, 1, 0.5]``), normalised to sum 1, stride 2, padding 1; index 30 is unused;
- input in [0, 1], normalised by the ImageNet mean / std before the network (the
  un-normalised image is the first feature set);
- the learned ``alpha`` / ``beta`` [1, 1475, 1, 1] are the ones shipped in that wheel
  (``DISTS_pytorch/weights.pt``, SHA-256 checked on load; the package is never
  imported, see :mod:`recon.metrics.dists_weights`).

Two documented differences: the statistics are computed in float64 (the reference uses
float32; differences ~1e-6), and the result is clipped below at 0 (identical images
give exactly 0 instead of a rounding residue of either sign).

The VGG16 ImageNet weights are not shipped and never downloaded: pass the path of
torchvision's ``vgg16-397923af.pth`` as ``vgg_weights`` or set ``CRUNET_VGG16_WEIGHTS``
(how both weight files are found and checked: :mod:`recon.metrics.dists_weights`).
Without usable weights the functions raise :class:`DistsUnavailable` with the reason.

Images are scored as the other metrics score them (:func:`recon.metrics.frames.prepare`):
magnitude of ``[t, y, x]`` (or ``[y, x]``), optional CMRxRecon centre crop, each frame
divided by its own maximum; the grey frame is replicated to three channels. Frames must
be at least 32x32. :mod:`recon.metrics` does not import this module (it builds a VGG16);
:func:`recon.metrics.summarise` imports it when called.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recon.errors import InputError
from recon.metrics.dists_weights import (
    CHANNELS,
    ENV_VAR,
    VGG16_CONVS,
    DistsUnavailable,
    check_name_hash,
    dists_weights_path,
    load_alpha_beta,
    vgg_path,
    vgg_state,
)
from recon.metrics.frames import ArrayLike, Crop, prepare

MIN_SIZE = 32
C1 = 1e-6
C2 = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the max pools of torchvision's vgg16.features (VGG16_CONVS: its convolutions) that DISTS
# replaces by L2 pooling: index -> channels
L2POOLS = {4: 64, 9: 128, 16: 256, 23: 512}
N_LAYERS = 30                      # features[0:30]; the last max pool (30) is not used
STAGE_OUTPUTS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
FRAME_BATCH = 8

__all__ = ["DistsNet", "DistsUnavailable", "dists", "dists_available", "dists_weights_path",
           "load_alpha_beta", "ENV_VAR", "MIN_SIZE"]


# ---------------------------------------------------------------------------
# network


class L2Pool(nn.Module):
    """DISTS's L2 pooling: ``sqrt(g * x^2 + 1e-12)`` per channel, stride 2, padding 1.

    ``g`` is the normalised outer product of a 5-tap Hann window with its zero end taps
    dropped, i.e. ``[0.5, 1, 0.5]`` -> a 3x3 kernel. [b, c, h, w] -> [b, c, (h-1)//2+1, (w-1)//2+1].
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        kernel = torch.outer(taps, taps)
        kernel = (kernel / kernel.sum()).to(torch.float32)
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x * x, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return torch.sqrt(out + 1e-12)


class DistsNet(nn.Module):
    """VGG16 ``features`` with L2 pooling plus the DISTS weights ``alpha`` / ``beta``.

    Parameter names are torchvision's (``features.0.weight`` ... ``features.28.bias``),
    so ``features.load_state_dict`` takes torchvision's VGG16 state dict (without its
    classifier). ``alpha`` and ``beta`` [1, 1475, 1, 1] are buffers.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(N_LAYERS):
            if i in VGG16_CONVS:
                c_in, c_out = VGG16_CONVS[i]
                layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
            elif i in L2POOLS:
                layers.append(L2Pool(L2POOLS[i]))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("alpha", torch.full((1, sum(CHANNELS), 1, 1), 0.1))
        self.register_buffer("beta", torch.full((1, sum(CHANNELS), 1, 1), 0.1))
        self.requires_grad_(False)
        self.eval()

    def feature_sets(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: [b, 3, h, w] in [0, 1] -> the six feature sets [b, c_k, h_k, w_k], c_k = CHANNELS."""
        out = [x]
        h = (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in STAGE_OUTPUTS:
                out.append(h)
        return out

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """DISTS between two lists of feature sets (from :meth:`feature_sets`): [b], float64."""
        alpha = self.alpha.double()
        beta = self.beta.double()
        w_sum = alpha.sum() + beta.sum()
        alphas = torch.split(alpha / w_sum, CHANNELS, dim=1)
        betas = torch.split(beta / w_sum, CHANNELS, dim=1)
        similarity = torch.zeros(fx[0].shape[0], dtype=torch.float64, device=fx[0].device)
        for x, y, a, b in zip(fx, fy, alphas, betas):
            x, y = x.double(), y.double()
            mx = x.mean(dim=(2, 3), keepdim=True)
            my = y.mean(dim=(2, 3), keepdim=True)
            s1 = (2 * mx * my + C1) / (mx ** 2 + my ** 2 + C1)
            vx = ((x - mx) ** 2).mean(dim=(2, 3), keepdim=True)
            vy = ((y - my) ** 2).mean(dim=(2, 3), keepdim=True)
            cxy = (x * y).mean(dim=(2, 3), keepdim=True) - mx * my
            s2 = (2 * cxy + C2) / (vx + vy + C2)
            similarity = similarity + (a * s1 + b * s2).sum(dim=(1, 2, 3))
        return (1.0 - similarity).clamp_min(0.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: [b, 3, h, w] in [0, 1] -> DISTS [b] (float64)."""
        return self.distance(self.feature_sets(x), self.feature_sets(y))


# ---------------------------------------------------------------------------
# the network for a weights file

_LOCK = threading.Lock()
_CACHE: dict[tuple, Union[DistsNet, DistsUnavailable]] = {}


def _build(path: Path) -> DistsNet:
    check_name_hash(path)
    state = vgg_state(path)
    alpha, beta = load_alpha_beta()
    net = DistsNet()
    net.features.load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)
    net.alpha.copy_(alpha)
    net.beta.copy_(beta)
    return net


def _network(vgg_weights: Union[str, Path, None], device: Union[str, torch.device, None] = None) -> DistsNet:
    """The DISTS network for these weights, built once per file (path, mtime, size) and device.

    A file that failed to load is remembered too (until it changes), so callers that ask
    for every series do not re-read it.
    """
    path = vgg_path(vgg_weights)
    stat = path.stat()
    file_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    dev = torch.device("cpu" if device is None else device)
    with _LOCK:
        base = _CACHE.get(file_key)
        if base is None:
            try:
                base = _build(path)
            except DistsUnavailable as exc:
                base = exc
            _CACHE[file_key] = base
        if isinstance(base, DistsUnavailable):
            raise DistsUnavailable(str(base))
        if dev.type == "cpu":
            return base
        key = file_key + (str(dev),)
        net = _CACHE.get(key)
        if net is None:
            net = _CACHE[key] = copy.deepcopy(base).to(dev)
        return net  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# public API


def dists_available(vgg_weights: Union[str, Path, None] = None) -> tuple[bool, str]:
    """``(True, "")`` if DISTS can be computed with these weights (argument or env var),
    else ``(False, reason)``. Loads (and caches) the network when the file exists."""
    try:
        _network(vgg_weights)
    except DistsUnavailable as exc:
        return False, str(exc)
    return True, ""


def dists(ref: ArrayLike, rec: ArrayLike, vgg_weights: Union[str, Path, None] = None,
          crop: Crop = None, device: Union[str, torch.device, None] = None) -> np.ndarray:
    """Per-frame DISTS, [t] (0 = identical; larger = more different).

    ref, rec: complex or real [t, y, x] (or [y, x]), numpy or torch; magnitudes, optional
    centre ``crop`` (h, w) and per-frame max normalisation as :func:`recon.metrics.psnr`.
    Each grey frame is replicated to RGB. vgg_weights: torchvision VGG16 state dict file,
    default ``$CRUNET_VGG16_WEIGHTS``. device: where the network runs (default CPU).
    Raises InputError for bad input or frames smaller than 32x32, and
    :class:`DistsUnavailable` when the weights are missing or invalid.
    """
    r, p = prepare(ref, rec, crop)
    if r.shape[-2] < MIN_SIZE or r.shape[-1] < MIN_SIZE:
        raise InputError(f"DISTS: image size {tuple(r.shape[-2:])} is smaller than {MIN_SIZE}x{MIN_SIZE}")
    net = _network(vgg_weights, device)
    dev = net.alpha.device
    scores = []
    with torch.inference_mode():
        for i in range(0, r.shape[0], FRAME_BATCH):
            x = r[i:i + FRAME_BATCH].to(dev, torch.float32).unsqueeze(1).expand(-1, 3, -1, -1)
            y = p[i:i + FRAME_BATCH].to(dev, torch.float32).unsqueeze(1).expand(-1, 3, -1, -1)
            scores.append(net(x, y).cpu())
    return torch.cat(scores).numpy()
