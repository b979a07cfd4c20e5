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
  (``DISTS_pytorch/weights.pt``, SHA-256 checked on load). Install it with
  ``pip install --no-deps DISTS_pytorch``: its own module imports torchvision and
  downloads VGG16 at run time, so it is located with ``importlib.util.find_spec`` and
  never imported.

Two documented differences: the statistics are computed in float64 (the reference uses
float32; differences ~1e-6), and the result is clipped below at 0 (identical images
give exactly 0 instead of a rounding residue of either sign).

The VGG16 ImageNet weights are not shipped and never downloaded: pass the path of
torchvision's ``vgg16-397923af.pth`` (a plain state dict; ``classifier.*`` keys are
ignored, keys without the ``features.`` prefix are accepted) as ``vgg_weights`` or set
``CRUNET_VGG16_WEIGHTS``. The file is read with ``torch.load(weights_only=True)``; every
tensor's shape is checked, and when the file name carries torchvision's hash suffix
(``name-<hex>.pth``) the file's SHA-256 must begin with it, as ``torch.hub`` checks.
Without usable weights the functions raise :class:`DistsUnavailable` with the reason.

Images are scored as :mod:`recon.metrics` scores them: magnitude of ``[t, y, x]`` (or
``[y, x]``), optional CMRxRecon centre crop, each frame divided by its own maximum; the
grey frame is replicated to three channels. Frames must be at least 32x32.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recon.errors import CrunetError, InputError
from recon.metrics import ArrayLike, Crop, _prepare

ENV_VAR = "CRUNET_VGG16_WEIGHTS"
DISTS_PACKAGE = "DISTS_pytorch"
# SHA-256 of DISTS_pytorch 0.1's weights.pt (the same file is also installed as <prefix>/weights.pt)
DISTS_WEIGHTS_SHA256 = "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218"
MIN_SIZE = 32
C1 = 1e-6
C2 = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg16.features: index -> (in, out) channels of its 3x3 convolutions ...
VGG16_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256),
               12: (256, 256), 14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512),
               24: (512, 512), 26: (512, 512), 28: (512, 512)}
# ... and the max pools DISTS replaces by L2 pooling: index -> channels
L2POOLS = {4: 64, 9: 128, 16: 256, 23: 512}
N_LAYERS = 30                      # features[0:30]; the last max pool (30) is not used
STAGE_OUTPUTS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (3, 64, 128, 256, 512, 512)
FRAME_BATCH = 8

__all__ = ["DistsNet", "DistsUnavailable", "dists", "dists_available", "dists_weights_path",
           "load_alpha_beta", "ENV_VAR", "MIN_SIZE"]


class DistsUnavailable(CrunetError, RuntimeError):
    """DISTS cannot be computed here; the message says which file or setting is missing and why."""


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
# weights


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _torch_load(path: Path, what: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported with its cause
        raise DistsUnavailable(f"{what} {path} cannot be read with torch.load(weights_only=True): "
                               f"{type(exc).__name__}: {exc}") from exc


def dists_weights_path() -> Path:
    """Path of ``weights.pt`` (alpha / beta) in the installed ``DISTS_pytorch`` package.

    Found with ``importlib.util.find_spec`` without importing the package (which imports
    torchvision). Raises :class:`DistsUnavailable` when the package or file is missing.
    """
    hint = f"run `pip install --no-deps {DISTS_PACKAGE}` (its code is not used, only weights.pt)"
    try:
        spec = importlib.util.find_spec(DISTS_PACKAGE)
    except (ImportError, ValueError) as exc:
        raise DistsUnavailable(f"DISTS needs the learned weights of the '{DISTS_PACKAGE}' package, "
                               f"which cannot be located ({exc}): {hint}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise DistsUnavailable(f"DISTS needs the learned weights of the '{DISTS_PACKAGE}' package, "
                               f"which is not installed: {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights.pt"
        if path.is_file():
            return path
    raise DistsUnavailable(f"the '{DISTS_PACKAGE}' package has no weights.pt in "
                           f"{list(spec.submodule_search_locations)}: reinstall it ({hint})")


def load_alpha_beta(path: Optional[Path] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DISTS's learned ``alpha``, ``beta`` (float32 [1, 1475, 1, 1]) from ``DISTS_pytorch/weights.pt``.

    The file's SHA-256 must be that of DISTS_pytorch 0.1; raises :class:`DistsUnavailable`.
    """
    path = dists_weights_path() if path is None else Path(path)
    digest = _sha256(path)
    if digest != DISTS_WEIGHTS_SHA256:
        raise DistsUnavailable(f"DISTS weights {path}: SHA-256 {digest} is not that of "
                               f"{DISTS_PACKAGE} 0.1 ({DISTS_WEIGHTS_SHA256})")
    state = _torch_load(path, "DISTS weights")
    shape = (1, sum(CHANNELS), 1, 1)
    out = []
    for key in ("alpha", "beta"):
        t = state.get(key) if isinstance(state, Mapping) else None
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or not bool(torch.isfinite(t).all()):
            raise DistsUnavailable(f"DISTS weights {path}: '{key}' must be a finite tensor of shape {shape}")
        out.append(t.detach().to(torch.float32))
    return out[0], out[1]


def _vgg_path(vgg_weights: Union[str, Path, None]) -> Path:
    """The VGG16 weights file from the argument or ``$CRUNET_VGG16_WEIGHTS``; it must exist."""
    if vgg_weights is not None:
        raw, source = str(vgg_weights), "the vgg_weights argument"
    else:
        raw, source = os.environ.get(ENV_VAR, ""), f"${ENV_VAR}"
        if not raw.strip():
            raise DistsUnavailable(
                f"DISTS needs ImageNet VGG16 weights, which are not downloaded: set {ENV_VAR} "
                f"(or pass vgg_weights) to the path of torchvision's vgg16-397923af.pth")
    if not raw.strip():
        raise DistsUnavailable(f"{source} is an empty path; expected torchvision's vgg16-397923af.pth")
    path = Path(raw).expanduser()
    if not path.exists():
        raise DistsUnavailable(f"VGG16 weights file {path} (from {source}) does not exist")
    if not path.is_file():
        raise DistsUnavailable(f"VGG16 weights path {path} (from {source}) is not a file")
    return path


def _check_name_hash(path: Path) -> None:
    """torch.hub's rule: a ``name-<hex>.pth`` file's SHA-256 must begin with ``<hex>``."""
    match = re.fullmatch(r".+-([0-9a-f]{8,64})\.pth?", path.name)
    if match is None:
        return
    digest = _sha256(path)
    if not digest.startswith(match.group(1)):
        raise DistsUnavailable(f"VGG16 weights file {path}: its SHA-256 {digest} does not begin with "
                               f"the '{match.group(1)}' of its name (torchvision's naming): the file "
                               "is corrupt or not the one its name says")


def _vgg_state(path: Path) -> dict[str, torch.Tensor]:
    """Read and validate a VGG16 state dict file; see :func:`_check_vgg_state`."""
    return _check_vgg_state(_torch_load(path, "VGG16 weights file"), path)


def _check_vgg_state(state: object, path: Path) -> dict[str, torch.Tensor]:
    """Validate torchvision VGG16 weights read from ``path``; keys returned as ``features.<i>.weight|bias``.

    ``classifier.*`` keys are ignored; keys may lack the ``features.`` prefix (all or none).
    Unknown or missing keys, non-float tensors, wrong shapes and NaN / inf raise
    :class:`DistsUnavailable` naming the key.
    """
    if not isinstance(state, Mapping):
        raise DistsUnavailable(f"VGG16 weights file {path}: expected a state dict (a mapping of "
                               f"names to tensors), got {type(state).__name__}")
    keys = [k for k in state if not (isinstance(k, str) and k.startswith("classifier."))]
    prefixed = any(isinstance(k, str) and k.startswith("features.") for k in keys)
    expected = {f"features.{i}.{p}": ((c_out, c_in, 3, 3) if p == "weight" else (c_out,))
                for i, (c_in, c_out) in VGG16_CONVS.items() for p in ("weight", "bias")}
    found: dict[str, object] = {}
    original: dict[str, object] = {}
    unknown = []
    for k in keys:
        name = k if prefixed else f"features.{k}"
        if name not in expected:
            unknown.append(k)
            continue
        found[name], original[name] = state[k], k
    if unknown:
        raise DistsUnavailable(f"VGG16 weights file {path}: unexpected key(s) {unknown[:5]}"
                               f"{' ...' if len(unknown) > 5 else ''} (expected torchvision's vgg16 "
                               "state dict: features.<i>.weight / .bias, classifier.* ignored)")
    missing = [k for k in expected if k not in found]
    if missing:
        raise DistsUnavailable(f"VGG16 weights file {path}: missing key(s) {missing[:5]}"
                               f"{' ...' if len(missing) > 5 else ''} of torchvision's vgg16 features")
    out = {}
    for name, shape in expected.items():
        t, key = found[name], original[name]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise DistsUnavailable(f"VGG16 weights file {path}: '{key}' is not a floating-point tensor")
        if tuple(t.shape) != shape:
            raise DistsUnavailable(f"VGG16 weights file {path}: '{key}' has shape {tuple(t.shape)}, "
                                   f"expected {shape} (torchvision vgg16)")
        if not bool(torch.isfinite(t).all()):
            raise DistsUnavailable(f"VGG16 weights file {path}: '{key}' contains NaN or inf")
        out[name] = t.detach().to(torch.float32)
    return out


_LOCK = threading.Lock()
_CACHE: dict[tuple, Union[DistsNet, DistsUnavailable]] = {}


def _build(path: Path) -> DistsNet:
    _check_name_hash(path)
    state = _vgg_state(path)
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
    path = _vgg_path(vgg_weights)
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
    r, p = _prepare(ref, rec, crop)
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
