"""Benchmark: what the cross-cascade feature bank costs, at equal everything else.

One CRUNet-MR configuration (the installed crunet_ca's, or any model config) is built
once per variant with random weights, differing only in the bank: ``none`` (plain
CRUNet-MR), ``conv`` (3x3 conv fusion), ``ca`` (channel attention + the 3x3 projection),
``ca_1x1`` (channel attention folded into a pointwise projection) and ``ca_sum`` (the
attended cascades added, no projection: attention alone). Same
channels, cascades, wrap rows and input; timed alternating over ``repeats`` rounds in
the default precision (bf16 where the CPU has it natively). Reports the median seconds
per slice and each variant's ratio to ``none`` (and the fastest round, ``min_seconds``, which
other work on the machine disturbs least): the number behind the model docs' choice
of projection. Trained weights of those variants are compared for quality by
``crunet evaluate``; speed does not depend on the weights' values.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

#: Bank variants: name -> (fusion, bank_projection).
BANK_VARIANTS = {"none": ("none", "3x3"), "conv": ("conv", "3x3"), "ca": ("ca", "3x3"), "ca_1x1": ("ca", "1x1"),
                 "ca_sum": ("ca", "sum")}


def bench_bank(model_config, shape: tuple[int, int] = (128, 128), frames: int = 12, coils: int = 10,
               acceleration: int = 8, repeats: int = 5, device: str = "auto") -> dict:
    """Seconds per slice of each :data:`BANK_VARIANTS` of ``model_config`` (a CRUNet-MR
    :class:`recon.models.config.ModelConfig`) and the ratio to ``none``. JSON-ready dict."""
    from crunet.bench.network import BENCH_NOISE, _inputs
    from recon.errors import InputError
    from recon.machine import bf16_autocast, native_bf16, resolve_device
    from recon.models.registry import build_model, noise_kwargs
    from recon.pipeline import sync_device

    if model_config.name != "crunet":
        raise InputError(f"the bank benchmark needs a CRUNet-MR model config, got {model_config.name!r}")
    dev = resolve_device(device)
    bf16 = native_bf16(dev)
    torch.manual_seed(0)
    models = {name: build_model(replace(model_config, crunet=replace(model_config.crunet, fusion=fusion,
                                                                     bank_projection=projection))).to(dev).eval()
              for name, (fusion, projection) in BANK_VARIANTS.items()}
    k, mask, maps = _inputs(shape, frames, coils, acceleration, dev)
    noise = torch.full((1,), BENCH_NOISE, device=dev)

    def run(name: str) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), bf16_autocast(dev, bf16):
            models[name](k, mask, maps, **noise_kwargs(models[name], noise))
        sync_device(dev)
        return time.perf_counter() - t0

    for name in models:  # warm-up
        run(name)
    seconds = {name: [] for name in models}
    for _ in range(repeats):
        for name in models:
            seconds[name].append(run(name))
    base = float(np.median(seconds["none"]))
    c = model_config.crunet
    return {"device": str(dev), "precision": "bf16" if bf16 else "fp32", "shape": list(shape), "frames": frames,
            "coils": coils, "threads": torch.get_num_threads(), "repeats": repeats,
            "model": f"CRUNet-MR {c.channels}ch x{c.cascades}, wrap_rows {c.wrap_rows}",
            "variants": {name: {"seconds": float(np.median(s)), "min_seconds": float(min(s)), "all_seconds": s,
                                "ratio_to_none": float(np.median(s)) / base}
                         for name, s in seconds.items()}}
