"""Benchmark: seconds per slice of each reconstruction method, in one run, as ratios.

Every method (classical, installed trained weights by name, weights directories) runs
on the same simulated slice (by default the shipped held-out patient's mid-ventricular slice,
acquired as no training run saw: point-dipole coils, image SNR 50, line-by-line order; the
piecewise-constant phantom flatters total-variation methods) through the one pipeline
(:func:`recon.pipeline.reconstruct_slice`), with coil maps estimated once (ESPIRiT)
and shared, alternating methods over ``repeats`` rounds so load from other processes
hits all alike. The result holds, per method, the median seconds per slice, the ratio
to the fastest method and the PSNR/SSIM against the slice's ground truth. When BART is
installed, ``bart pics`` with temporal total variation runs on the same k-space and maps
as the compressed-sensing reference (a learned method should be far faster than it).
"""

from __future__ import annotations

import numpy as np
import torch

from recon.metrics import psnr, ssim
from recon.pipeline import COMPARED_METHODS

#: the label of ``bart pics`` among the methods
BART_LABEL = "bart pics"


def bench_methods(shape: tuple[int, int] = (128, 128), n_phases: int = 12, n_coils: int = 10,
                  acceleration: int = 8, methods: tuple[str, ...] = COMPARED_METHODS,
                  repeats: int = 3, seed: int = 0, device: str = "auto", weights: tuple[str, ...] = (),
                  bart: bool = True, shifted_mask: bool = False, source: str = "real",
                  coil_family: str = "dipole", snr: float = 50.0) -> dict:
    """Time ``methods`` (names) and ``weights`` (directories, method ``model``) on one simulated slice.

    shape : recon matrix ``(y, x)``; n_phases, n_coils, acceleration : the simulated cine.
    bart : also time ``bart pics -R T:1024:0:0.01 -i 50`` (temporal TV, the CS reference;
        :func:`recon.coils.bart_io.bart_pics`) on the same k-space and maps, labelled
        ``bart pics``, when BART is installed (``"not installed"`` in ``bart`` otherwise).
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

    configs = method_configs(methods, weights, device=device)  # checked before the simulation
    from recon.simulate.realdata import image_source

    cfg = SimulationConfig(n_phases=n_phases, n_coils=n_coils, matrix=tuple(shape), acceleration=acceleration,
                           noise_scan=False, seed=seed, shifted_mask=shifted_mask, source=image_source(source),
                           coil_family=coil_family, snr=snr, ordering="linear")
    scan = simulate_scan(cfg)
    headers, data = scan.acquisitions()
    s = assemble_slices(headers, data, encoding_info(build_cine_header(cfg.protocol())))[0]
    ref = scan.slices[0].reference
    from recon.coils.bart_io import bart_executable, bart_pics
    from recon.pipeline import prepare

    even = all(int(n) % 2 == 0 for n in shape)
    use_bart = bart and even and bart_executable() is not None
    times: dict[str, list[float]] = {m: [] for m in configs} | ({BART_LABEL: []} if use_bart else {})
    quality: dict[str, dict] = {}
    maps, t_maps = None, 0.0

    def score(m: str, frames: np.ndarray) -> None:
        if m not in quality:
            quality[m] = {"psnr": float(np.mean(psnr(ref, frames))), "ssim": float(np.mean(ssim(ref, frames)))}

    for _ in range(repeats):
        for m, rc in configs.items():
            res = reconstruct_slice(s, rc, maps=maps)
            if maps is None:
                maps, t_maps = res.maps, res.seconds_maps
            times[m].append(res.seconds_method)
            score(m, res.frames)
            if rc.weights():
                quality[m]["model"] = rc.comment()
        if use_bart:
            p = prepare(s, maps=maps)
            r = bart_pics(p.kspace.numpy(), p.maps.numpy())
            times[BART_LABEL].append(r["seconds"])
            score(BART_LABEL, r["frames"])
            quality[BART_LABEL]["command"] = r["command"]
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
        "bart": ("pics timed" if use_bart else "not asked" if not bart else
                 "odd matrix, not compared (BART centres odd axes differently)" if not even else "not installed"),
    }
