"""Benchmark: seconds per slice of each reconstruction method, in one run, as ratios.

Every method runs on the same simulated slice (maps estimated once with ESPIRiT),
alternating methods over ``repeats`` rounds so load from other processes hits all
alike; the result holds the median seconds, the ratio to the fastest method and the
PSNR/SSIM against the slice's ground truth.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from recon.metrics import psnr, ssim


def bench_methods(shape: tuple[int, int] = (128, 128), n_phases: int = 12, n_coils: int = 10,
                  acceleration: int = 8, methods: tuple[str, ...] = ("zf", "sense", "lps"),
                  repeats: int = 3, seed: int = 0, device: str = "cpu") -> dict:
    from recon.baselines.registry import run_method
    from recon.io.acquisitions import assemble_slices
    from recon.io.header import build_cine_header, encoding_info
    from recon.problem import prepare
    from recon.simulate.cine import SimulationConfig, simulate_scan

    cfg = SimulationConfig(n_phases=n_phases, n_coils=n_coils, matrix=tuple(shape), acceleration=acceleration,
                           noise_scan=False, seed=seed)
    scan = simulate_scan(cfg)
    headers, data = scan.acquisitions()
    s = assemble_slices(headers, data, encoding_info(build_cine_header(cfg.protocol())))[0]
    t0 = time.perf_counter()
    problem = prepare(s, device=device)
    t_maps = time.perf_counter() - t0
    ref = scan.slices[0].reference
    times: dict[str, list[float]] = {m: [] for m in methods}
    quality = {}
    for _ in range(repeats):
        for m in methods:
            t1 = time.perf_counter()
            with torch.inference_mode():
                x = run_method(m, problem)
            if x.is_cuda:
                torch.cuda.synchronize()
            times[m].append(time.perf_counter() - t1)
            if m not in quality:
                rec = x.cpu().numpy()
                quality[m] = {"psnr": float(np.mean(psnr(ref, rec))), "ssim": float(np.mean(ssim(ref, rec)))}
    med = {m: float(np.median(v)) for m, v in times.items()}
    fastest = min(med.values())
    return {
        "shape": list(shape), "phases": n_phases, "coils": n_coils, "acceleration": acceleration,
        "device": device, "threads": torch.get_num_threads(), "repeats": repeats,
        "seconds_maps": t_maps,
        "methods": {m: {"seconds": med[m], "ratio_to_fastest": med[m] / fastest, "all_seconds": times[m],
                        **quality[m]} for m in methods},
    }
