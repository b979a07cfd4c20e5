"""HaarPSI per frame through the optional ``piq`` package, loaded without torchvision.

HaarPSI (Reisenhofer et al. 2018) is computed by ``piq.haarpsi`` on the frames the
other metrics score (:func:`recon.metrics.frames.prepare`: magnitude, optional
CMRxRecon centre crop, per-frame max normalisation). ``import piq`` would import
torchvision, so :func:`load_piq_haarpsi` loads only the submodules HaarPSI needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Callable, Optional

import numpy as np
import torch

from recon.errors import InputError
from recon.metrics.frames import ArrayLike, Crop, prepare

HAARPSI_MIN_SIZE = 16  # piq HaarPSI with 3 scales needs at least 2**(3+1) pixels a side

__all__ = ["HAARPSI_MIN_SIZE", "haarpsi", "load_piq_haarpsi"]

_PIQ_LOCK = threading.Lock()
_PIQ_HAARPSI: Optional[Callable[..., torch.Tensor]] = None


def load_piq_haarpsi() -> Callable[..., torch.Tensor]:
    """Return ``piq.haarpsi``; raise RuntimeError if the ``piq`` package is missing.

    ``import piq`` imports torchvision (for its VGG-based metrics), which is absent, or a
    CUDA build that fails to load, next to a CPU-only torch. HaarPSI itself needs only
    ``piq.haarpsi``, ``piq.utils`` and ``piq.functional``, so those submodules are loaded
    under a temporary stand-in for the ``piq`` package, which is then taken out of
    ``sys.modules`` again (a later ``import piq`` starts clean).
    """
    global _PIQ_HAARPSI
    if _PIQ_HAARPSI is not None:
        return _PIQ_HAARPSI
    with _PIQ_LOCK:
        if _PIQ_HAARPSI is not None:
            return _PIQ_HAARPSI
        loaded = sys.modules.get("piq")
        if loaded is not None and callable(getattr(loaded, "haarpsi", None)):
            _PIQ_HAARPSI = loaded.haarpsi
            return _PIQ_HAARPSI
        spec = importlib.util.find_spec("piq")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(
                "HaarPSI needs the optional 'piq' package, which is not installed: "
                "run `pip install --no-deps piq` (its HaarPSI needs no torchvision, and a plain "
                "install would pull a CUDA torchvision)")
        before = set(sys.modules)
        stand_in = types.ModuleType("piq")
        stand_in.__path__ = list(spec.submodule_search_locations)  # type: ignore[attr-defined]
        stand_in.__spec__ = spec
        sys.modules["piq"] = stand_in
        try:
            fn = importlib.import_module("piq.haarpsi").haarpsi
        except Exception as exc:  # noqa: BLE001 - reported with its cause
            raise RuntimeError(f"the 'piq' package is installed but its HaarPSI cannot be loaded: {exc}") from exc
        finally:
            for key in set(sys.modules) - before:
                if key == "piq" or key.startswith("piq."):
                    del sys.modules[key]
        _PIQ_HAARPSI = fn
        return fn


def haarpsi(ref: ArrayLike, rec: ArrayLike, crop: Crop = None) -> np.ndarray:
    """Per-frame HaarPSI, [t], by ``piq.haarpsi`` on max-normalised magnitude frames.

    ref, rec: complex or real [t, y, x] (or [y, x]), numpy or torch. piq defaults
    (3 scales, 2x subsampling, c = 30, alpha = 4.2), data_range = 1, as the paper.
    Frames must be at least 16x16. Raises RuntimeError if piq is not installed.
    """
    fn = load_piq_haarpsi()
    r, p = prepare(ref, rec, crop)
    if r.shape[-2] < HAARPSI_MIN_SIZE or r.shape[-1] < HAARPSI_MIN_SIZE:
        raise InputError(f"HaarPSI: image size {tuple(r.shape[-2:])} is smaller than "
                         f"{HAARPSI_MIN_SIZE}x{HAARPSI_MIN_SIZE}")
    return fn(p.unsqueeze(1), r.unsqueeze(1), data_range=1.0, reduction="none").numpy()
