"""Benchmark: the network alone and the whole chain per slice, in each arithmetic, on one device.

For a GPU (``configs/gpu/bench.sh`` runs it at paper size: 64 channels, 256 x 256, 25
frames, 10 coils) and for a CPU alike. The model is built from a model config (random
weights: speed does not depend on their values) or loaded from installed weights.
Variants, each timed on the same input, alternating over ``repeats`` rounds:

* ``fp32``: float32 everywhere (on CUDA with TF32 matmuls and convolutions off);
* ``tf32``: float32 with TF32 tensor cores (CUDA only; ``n/a`` on a CPU);
* ``bf16``: bfloat16 autocast of the network's real layers (as ``precision=bf16``); ``n/a`` where
  bf16 is emulated (:func:`crunet.bench.arithmetic.emulated_bf16_note`);
* ``compile``: ``torch.compile`` of the model in the device's default arithmetic (bf16
  autocast where bf16 is native, :func:`recon.machine.native_bf16`, else fp32: compiling
  emulated bf16 says nothing); on CUDA ``mode="reduce-overhead"`` (CUDA graphs). Its
  compile time and arithmetic are reported apart.

Each variant reports the median seconds per slice, the ratio to ``fp32``, the network's
GFLOP/s and its fraction of the device's measured matmul rate in the same arithmetic and in
fp32 (:mod:`crunet.bench.arithmetic`: how near the machine's limit it runs) and, on CUDA,
the peak memory. ``chain`` times :func:`recon.pipeline.reconstruct_slice` on a simulated
slice of the same size (ESPIRiT maps from the ACS, then the network in the default
precision): what a user waits for per slice.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = ("fp32", "tf32", "bf16", "compile")


def _inputs(shape: tuple[int, int], frames: int, coils: int, acceleration: int, device: torch.device):
    from recon.masks import cine_mask

    g = torch.Generator().manual_seed(0)
    ny, nx = shape
    mask = torch.as_tensor(cine_mask(ny, acceleration, n_frames=frames, shifted=True), dtype=torch.float32)[None]
    k = torch.randn(1, frames, coils, ny, nx, dtype=torch.complex64, generator=g) * mask[..., None, :, None]
    maps = torch.randn(1, coils, ny, nx, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    return k.to(device), mask.to(device), maps.to(device)


#: Normalised k-space noise std given to a model with noise-weighted data consistency in the
#: timings (a typical level of the validation data; the arithmetic does not depend on it).
BENCH_NOISE = 0.05


def bench_network(model_config=None, weights: str | None = None, shape: tuple[int, int] = (256, 256),
                  frames: int = 25, coils: int = 10, acceleration: int = 8, variants: tuple[str, ...] = VARIANTS,
                  repeats: int = 5, device: str = "auto", chain: bool = True) -> dict:
    """Time the network per slice in each of ``variants`` (see the module doc), and the whole chain.

    model_config : a :class:`recon.models.config.ModelConfig` (random weights), or
    weights : installed weights name or directory. Returns a JSON-ready dict.
    """
    from crunet.bench.arithmetic import count_flops, emulated_bf16_note, matmul_rates, rate_fields
    from recon.errors import InputError
    from recon.machine import bf16_autocast, native_bf16, resolve_device
    from recon.config import to_dict
    from recon.models.registry import noise_kwargs
    from recon.pipeline import sync_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.empty(0, device=dev).device
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise InputError(f"unknown network variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    if weights:
        from recon.inference import load_cached

        model, model_config = load_cached(weights, dev)
    else:
        from recon.models.registry import build_model

        model = build_model(model_config).to(dev).eval()
    k, mask, maps = _inputs(shape, frames, coils, acceleration, dev)
    extra = noise_kwargs(model, torch.full((1,), BENCH_NOISE, device=dev))
    runs: dict = {}
    compiled, compile_s = None, None
    compile_precision = "bf16" if native_bf16(dev) else "fp32"
    for v in variants:
        note = {"tf32": None if dev.type == "cuda" else "n/a: TF32 is a CUDA tensor-core mode",
                "bf16": emulated_bf16_note(dev)}.get(v)
        runs[v] = {"seconds": None, "note": note} if note else {"all_seconds": []}
    timed = [v for v in variants if "all_seconds" in runs[v]]

    def forward(v: str) -> None:
        nonlocal compiled, compile_s
        net = model
        if v == "compile":
            if compiled is None:
                mode = "reduce-overhead" if dev.type == "cuda" else "default"
                compiled = torch.compile(model, mode=mode, dynamic=False)
                t0 = time.perf_counter()
                _run(compiled, compile_precision)
                compile_s = time.perf_counter() - t0
            net = compiled
        precision = {"fp32": "fp32", "tf32": "fp32", "bf16": "bf16", "compile": compile_precision}[v]
        _run(net, precision, tf32=v == "tf32")

    def _run(net, precision: str, tf32: bool = False) -> None:
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        with torch.inference_mode(), bf16_autocast(dev, precision == "bf16"):
            net(k, mask, maps, **extra)
        sync_device(dev)

    for v in timed:  # warm-up (and compile) first, outside the timing
        forward(v)
    for _ in range(repeats):
        for v in timed:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            forward(v)
            runs[v]["all_seconds"].append(time.perf_counter() - t0)
            if dev.type == "cuda":
                runs[v]["peak_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    flops = count_flops(lambda: model(k, mask, maps, **extra))
    rates = matmul_rates(dev)
    base = float(np.median(runs["fp32"]["all_seconds"])) if "fp32" in timed else None
    for v in timed:
        runs[v]["seconds"] = float(np.median(runs[v]["all_seconds"]))
        runs[v]["ratio_to_fp32"] = runs[v]["seconds"] / base if base else None
        runs[v].update(rate_fields(flops, runs[v]["seconds"], rates, compile_precision if v == "compile" else v))
    if compile_s is not None:
        runs["compile"].update(compile_seconds=compile_s, precision=compile_precision)
    result = {"device": str(dev), "shape": list(shape), "frames": frames, "coils": coils,
              "acceleration": acceleration, "threads": torch.get_num_threads(), "repeats": repeats,
              "gflop_per_forward": flops / 1e9, "matmul_gflops": rates,
              "model": {"name": model_config.name, model_config.name: to_dict(getattr(model_config, model_config.name))},
              "variants": runs}
    if chain:
        result["chain"] = _chain(weights, model, model_config, shape, frames, coils, acceleration, dev)
    return result


def _chain(weights, model, model_config, shape, frames, coils, acceleration, dev) -> dict:
    """Seconds of :func:`recon.pipeline.reconstruct_slice` on a simulated slice: maps, network, total
    (a random model is saved as weights in a temporary folder and run as method ``model``)."""
    import tempfile

    from recon.io.assemble import assemble_slices
    from recon.io.header import build_cine_header, encoding_info
    from recon.pipeline import ReconConfig, reconstruct_slice
    from recon.simulate.cine import SimulationConfig, simulate_scan
    from recon.weights import save_weights

    cfg = SimulationConfig(n_phases=frames, n_coils=coils, matrix=tuple(shape), acceleration=acceleration,
                           noise_scan=False)
    scan = simulate_scan(cfg)
    headers, data = scan.acquisitions()
    s = assemble_slices(headers, data, encoding_info(build_cine_header(cfg.protocol())))[0]
    with tempfile.TemporaryDirectory() as tmp:
        if not weights:
            weights = str(save_weights(model, model_config, Path(tmp) / "random"))
        rc = ReconConfig(method="model", options={"weights": weights}, device=dev.type)
        reconstruct_slice(s, rc)  # warm-up: weights loaded, kernels chosen
        t0 = time.perf_counter()
        res = reconstruct_slice(s, rc)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "seconds_maps": res.seconds_maps, "seconds_method": res.seconds_method,
            "seconds_prepare": res.seconds_prepare}
