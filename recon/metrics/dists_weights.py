"""DISTS's two weight files, located, read and validated; nothing is downloaded.

- The learned ``alpha`` / ``beta`` [1, 1475, 1, 1] of DISTS are the ones shipped in the
  authors' wheel (PyPI ``DISTS_pytorch`` 0.1, ``DISTS_pytorch/weights.pt``, SHA-256
  checked on load). Install it with ``pip install --no-deps DISTS_pytorch``: its own
  module imports torchvision and downloads VGG16 at run time, so it is located with
  ``importlib.util.find_spec`` and never imported.
- The VGG16 ImageNet weights are not shipped and never downloaded: pass the path of
  torchvision's ``vgg16-397923af.pth`` (a plain state dict; ``classifier.*`` keys are
  ignored, keys without the ``features.`` prefix are accepted) as ``vgg_weights`` or set
  ``CRUNET_VGG16_WEIGHTS``. The file is read with ``torch.load(weights_only=True)``; every
  tensor's shape is checked, and when the file name carries torchvision's hash suffix
  (``name-<hex>.pth``) the file's SHA-256 must begin with it, as ``torch.hub`` checks.

Without usable weights the functions raise :class:`DistsUnavailable` with the reason.
The network they are loaded into is :class:`recon.metrics.dists.DistsNet`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import torch

from recon.errors import CrunetError

ENV_VAR = "CRUNET_VGG16_WEIGHTS"
DISTS_PACKAGE = "DISTS_pytorch"
# SHA-256 of DISTS_pytorch 0.1's weights.pt (the same file is also installed as <prefix>/weights.pt)
DISTS_WEIGHTS_SHA256 = "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218"
# torchvision vgg16.features: index -> (in, out) channels of its 3x3 convolutions
VGG16_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256),
               12: (256, 256), 14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512),
               24: (512, 512), 26: (512, 512), 28: (512, 512)}
# channels of DISTS's six feature sets (image, relu1_2 ... relu5_3); alpha / beta have sum(CHANNELS) = 1475
CHANNELS = (3, 64, 128, 256, 512, 512)

__all__ = ["CHANNELS", "DistsUnavailable", "ENV_VAR", "VGG16_CONVS", "check_name_hash",
           "dists_weights_path", "load_alpha_beta", "vgg_path", "vgg_state"]


class DistsUnavailable(CrunetError, RuntimeError):
    """DISTS cannot be computed here; the message says which file or setting is missing and why."""


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


def vgg_path(vgg_weights: Union[str, Path, None]) -> Path:
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


def check_name_hash(path: Path) -> None:
    """torch.hub's rule: a ``name-<hex>.pth`` file's SHA-256 must begin with ``<hex>``."""
    match = re.fullmatch(r".+-([0-9a-f]{8,64})\.pth?", path.name)
    if match is None:
        return
    digest = _sha256(path)
    if not digest.startswith(match.group(1)):
        raise DistsUnavailable(f"VGG16 weights file {path}: its SHA-256 {digest} does not begin with "
                               f"the '{match.group(1)}' of its name (torchvision's naming): the file "
                               "is corrupt or not the one its name says")


def vgg_state(path: Path) -> dict[str, torch.Tensor]:
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
