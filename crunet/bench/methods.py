"""Benchmark: seconds per slice of each reconstruction method, in one run, as ratios.

Every method (classical, installed trained weights by name, weights directories) runs
on the same simulated slice (by default the shipped held-out patient's mid-ventricular slice,
acquired as no training run saw: point-dipole coils, image SNR 50, line-by-line order; the
piecewise-constant phantom flatters total-variation methods) through the one pipeline
(:func:`recon.pipeline.reconstruct_slice`), with coil maps estimated once (ESPIRiT)
and shared, alternating methods over ``repeats`` rounds so load from other processes
hits all alike, after one untimed round (a learned method's first call loads and caches its
model, which a later method of the same weights then skips: timing that round had made the
first learned method of the list look 0.2-0.5 s slower than the next). The result holds, per
method, the median seconds per slice, the ratio to the fastest method and the PSNR/SSIM against
the slice's ground truth. When BART is
installed, ``bart_tv`` (``bart pics`` with temporal total variation,
:mod:`recon.baselines.bart_tv`) runs beside them as the compressed-sensing reference (a learned
method should be far faster than it).
"""

from __future__ import annotations

import numpy as np
import torch

from recon.metrics import psnr, ssim
from recon.pipeline import COMPARED_METHODS

#: the compressed-sensing reference added when BART is installed
BART_METHOD = "bart_tv"


def bench_methods(shape: tuple[int, int] = (128, 128), n_phases: int = 12, n_coils: int = 10,
                  acceleration: int = 8, methods: tuple[str, ...] = COMPARED_METHODS,
                  repeats: int = 3, seed: int = 0, device: str = "auto", weights: tuple[str, ...] = (),
                  bart: bool = True, shifted_mask: bool = False, source: str = "real",
                  coil_family: str = "dipole", snr: float = 50.0) -> dict:
    """Time ``methods`` (names) and ``weights`` (directories, method ``model``) on one simulated slice.

    shape : recon matrix ``(y, x)``; n_phases, n_coils, acceleration : the simulated cine.
    bart : also time method ``bart_tv`` (``bart pics -R T:1024:0:0.01 -i 50``, temporal TV, the CS
        reference) when BART is installed and not among ``methods`` (``"not installed"`` in
        ``bart`` otherwise).
    shifted_mask : the R-line lattice moves one line per frame (recorded in the result).
    source : the image (:func:`recon.simulate.realdata.image_source`: ``real``, the shipped
        held-out series, ``phantom`` or a ``.npz`` path); coil_family, snr : its acquisition
        (default the held-out dipole coils at SNR 50; recorded in the result).
    Returns a JSON-ready dict; ``methods`` maps each label to ``seconds`` (median),
    ``ratio_to_fastest``, ``all_seconds``, ``psnr``, ``ssim`` (and ``model`` for learned ones).
    """
    from recon.io.assemble import assemble_slices
    from recon.io.header import build_cine_header, encoding_info
    from recon.pipeline import method_configs, reconstruct_slice
    from recon.simulate.cine import SimulationConfig, simulate_scan
    from recon.simulate.realdata import image_source
    from recon.coils.bart_io import bart_executable

    even = all(int(n) % 2 == 0 for n in shape)
    use_bart = bart and even and bart_executable() is not None and BART_METHOD not in methods
    configs = method_configs(tuple(methods) + ((BART_METHOD,) if use_bart else ()), weights,
                             device=device)  # checked before the simulation
    cfg = SimulationConfig(n_phases=n_phases, n_coils=n_coils, matrix=tuple(shape), acceleration=acceleration,
                           noise_scan=False, seed=seed, shifted_mask=shifted_mask, source=image_source(source),
                           coil_family=coil_family, snr=snr, ordering="linear")
    scan = simulate_scan(cfg)
    headers, data = scan.acquisitions()
    s = assemble_slices(headers, data, encoding_info(build_cine_header(cfg.protocol())))[0]
    ref = scan.slices[0].reference
    times: dict[str, list[float]] = {m: [] for m in configs}
    quality: dict[str, dict] = {}
    maps, t_maps = None, 0.0
    for round_ in range(repeats + 1):
        for m, rc in configs.items():
            res = reconstruct_slice(s, rc, maps=maps)
            if maps is None:
                maps, t_maps = res.maps, res.seconds_maps
            if round_:  # round 0 warms up
                times[m].append(res.seconds_method)
            if m not in quality:
                quality[m] = {"psnr": float(np.mean(psnr(ref, res.frames))),
                              "ssim": float(np.mean(ssim(ref, res.frames)))}
            if rc.weights():
                quality[m]["model"] = rc.comment()
    med = {m: float(np.median(v)) for m, v in times.items()}
    fastest = min(med.values())
    first = next(iter(configs.values()))
    return {
        "shape": list(shape), "phases": n_phases, "coils": n_coils, "acceleration": acceleration,
        "shifted_mask": shifted_mask, "source": source, "coil_family": coil_family, "snr": snr,
        "device": str(first.torch_device()), "threads": torch.get_num_threads(), "repeats": repeats,
        "seconds_maps": t_maps,
        "methods": {m: {"seconds": med[m], "ratio_to_fastest": med[m] / fastest, "all_seconds": times[m],
                        **quality[m]} for m in times},
        "bart": ("pics timed" if BART_METHOD in configs else "not asked" if not bart else
                 "odd matrix, not compared (BART centres odd axes differently)" if not even else "not installed"),
    }
