"""Learned reconstruction at inference: a trained weights directory as a method.

``run_method("model", problem, weights="weights/crunet_ca")`` loads the weights
directory written by :func:`recon.weights.save_weights` (manifest checked), keeps
the model cached per (directory, device), scales k-space as in training
(:func:`recon.kspace.normalisation_scale`), runs the model and undoes the scale.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from recon.errors import InputError
from recon.kspace import normalisation_scale
from recon.problem import SliceProblem

_CACHE: dict[tuple[str, str], tuple[torch.nn.Module, object]] = {}
_LOCK = threading.Lock()


def load_cached(weights: str | Path, device: torch.device | str):
    """``(model, ModelConfig)`` of a weights directory, loaded once per device."""
    from recon.weights import load_weights

    key = (str(Path(weights).resolve()), str(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_weights(weights, device)
        return _CACHE[key]


def learned(p: SliceProblem, weights: str = "") -> torch.Tensor:
    """Reconstruct ``p`` with the trained model in ``weights`` -> complex64 ``[t, y, x]``."""
    if not weights:
        raise InputError("method 'model' needs the option weights=<directory with model.safetensors, "
                         "config.yaml and manifest.json> (written by crunet train)")
    model, _ = load_cached(weights, p.kspace.device)
    k, mask, maps = p.batched()
    scale = normalisation_scale(k).to(k.real.dtype)
    with torch.inference_mode():
        x = model(k / scale.view(-1, 1, 1, 1, 1), mask, maps) * scale.view(-1, 1, 1, 1)
    return x[0].to(torch.complex64)
