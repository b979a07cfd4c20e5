"""Learned reconstruction at inference: trained weights as a method.

``run_method("crunet_ca", problem)`` (weights by name, see
:func:`recon.weights.resolve_weights`) and ``run_method("model", problem,
weights="path/to/dir")`` both end here: the weights directory written by
:func:`recon.weights.save_weights` is loaded once per (directory, device) through
:func:`recon.weights.load_weights` (SHA-256 manifest checked), k-space is scaled as
in training (:func:`recon.kspace.normalisation_scale`), the model runs and the scale
is undone.
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
    """``(model, ModelConfig)`` of a weights directory or name, loaded (and checked) once per device."""
    from recon.weights import load_weights, resolve_weights

    directory = resolve_weights(weights)
    key = (str(directory.resolve()), str(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_weights(directory, device)
        return _CACHE[key]


def learned(p: SliceProblem, weights: str = "") -> torch.Tensor:
    """Reconstruct ``p`` with the trained model in ``weights`` -> complex64 ``[t, y, x]``.

    ``weights`` : a weights directory, or the name of installed weights (``crunet_ca``).
    """
    if not weights:
        raise InputError("method 'model' needs the option weights=<directory with model.safetensors, "
                         "config.yaml and manifest.json, or the name of installed weights such as crunet_ca>")
    model, _ = load_cached(weights, p.kspace.device)
    k, mask, maps = p.batched()
    scale = normalisation_scale(k).to(k.real.dtype)
    with torch.inference_mode():
        x = model(k / scale.view(-1, 1, 1, 1, 1), mask, maps) * scale.view(-1, 1, 1, 1)
    return x[0].to(torch.complex64)
