"""Benchmark: our ESPIRiT against ``bart ecalib`` on the same calibration data.

Both get the same time-averaged ACS lines (readout oversampling removed) and the same
kernel, calibration size, threshold and crop; BART reads them as zero-filled k-space
and finds the calibration region itself. Runs alternate (ours, BART, ours, ...) so
that load from other processes hits both alike. BART's time is the wall time of its
process (start-up and its ``.cfl`` I/O included, as when it is used as a tool); ours
is the call of :func:`recon.coils.maps_from_acs` in this process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from recon.coils.bart_io import bart_ecalib, bart_executable
from recon.coils.espirit import EspiritOptions
from recon.coils.estimate import calibration_region, compare_maps, maps_from_acs, merge_data
from recon.coils.merge import merge_sets
from recon.errors import InputError
from recon.kspace import remove_readout_oversampling, time_average
from recon.slicedata import SliceData


def _simulated_calibration(shape: tuple[int, int], n_coils: int, seed: int):
    """ACS ``[c, 24, nx]``, their lines, ky count, true maps, object support, and the slice's
    time-averaged k-space ``[c, y, x]`` (readout oversampling removed) and sampled lines ``[y]``
    (:func:`recon.kspace.time_average`) of one simulated slice."""
    from recon.masks import acs_indices
    from recon.simulate.cine import SimulationConfig, simulate_scan

    cfg = SimulationConfig(n_phases=2, n_coils=n_coils, matrix=tuple(shape), acceleration=4,
                           noise_scan=False, seed=seed)
    sim = simulate_scan(cfg).slices[0]
    lines = acs_indices(shape[0], cfg.n_acs)
    acs = remove_readout_oversampling(sim.kspace[:, :, lines].mean(0), shape[1])
    image = np.abs(sim.image).mean(0)
    average, sampled = time_average(torch.from_numpy(sim.kspace * sim.mask[:, None, :, None]), torch.from_numpy(sim.mask))
    average = remove_readout_oversampling(average, shape[1])
    return acs.astype(np.complex64), lines, shape[0], sim.csm, image > 0.05 * image.max(), average, sampled


def bench_coil_maps(shape: tuple[int, int] | SliceData = (128, 128), n_coils: int = 10, repeats: int = 5,
                    seed: int = 0, threads: int | None = None, **options) -> dict:
    """Time our ESPIRiT and ``bart ecalib -m1`` on one slice; report agreement.

    Parameters
    ----------
    shape : image grid ``(y, x)`` of a slice simulated here (our cine phantom and
        coil model, 24 ACS lines), or a :class:`SliceData` to calibrate from.
    n_coils : coils of the simulated slice (ignored for a ``SliceData``).
    repeats : timed runs of each; the median is reported.
    threads : torch threads for our runs (restored afterwards); None keeps the setting.
    options : :class:`~recon.coils.espirit.EspiritOptions` fields, passed to both.

    Returns
    -------
    dict (JSON-ready): ``shape``, ``n_coils``, ``options``, ``ours`` (``seconds``
    median, ``runs``), ``merged`` (the second set computed and merged as
    :func:`~recon.coils.estimate_maps` does by default: ``seconds``, ``runs``,
    ``ratio_to_first_set``, ``pixels_merged``), ``bart`` (``seconds``, ``runs``, ``command``; or the string
    ``"not installed"``), ``ratio`` (ours / BART), ``agreement`` (ours vs BART over
    the pixels both keep, inside the object for a simulated slice; see
    :func:`~recon.coils.compare_maps`), ``agreement_all_kept`` (the same over
    every pixel both keep, the object's surroundings included), ``crop_mismatch``
    (fraction of pixels kept by one only), ``truth`` (each vs the simulated maps in
    the object support, simulated slices only), and the machine (``cpu_count``,
    ``torch_threads``, ``load_avg``).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats must be an integer >= 1, got {repeats!r}")
    opts = EspiritOptions.from_dict(options)
    truth = support = None
    if isinstance(shape, SliceData):
        acs, lines, n_ky = calibration_region(shape), shape.acs_lines, int(shape.kspace.shape[-2])
        average, sampled = merge_data(shape)
    else:
        shape = tuple(int(s) for s in shape)
        acs, lines, n_ky, truth, support, average, sampled = _simulated_calibration(shape, n_coils, seed)
    c, _, nx = acs.shape
    kspace = np.zeros((c, n_ky, nx), np.complex64)
    kspace[:, lines] = acs
    run_ours = lambda: maps_from_acs(acs, lines, n_ky, **_fields(opts))  # noqa: E731
    merge_here = average.shape[-2] == n_ky  # as estimate_maps: no merge with phase oversampling

    def run_merged():  # what estimate_maps does by default: both sets, merged from the data
        sets = maps_from_acs(acs, lines, n_ky, **{**_fields(opts), "sets": 2})
        return merge_sets(average, sampled, sets)
    old_threads = torch.get_num_threads()
    have_bart = bart_executable() is not None
    ours_t, merged_t, bart_t, bart = [], [], [], None
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        ours = run_ours()  # warm-up (first-call allocations)
        for _ in range(repeats):
            t0 = time.perf_counter()
            ours = run_ours()
            ours_t.append(time.perf_counter() - t0)
            if merge_here:
                t0 = time.perf_counter()
                merged = run_merged()
                merged_t.append(time.perf_counter() - t0)
            if have_bart:
                bart = bart_ecalib(kspace, kernel=opts.kernel, calib_size=opts.calib_size,
                                   threshold=opts.threshold, crop=opts.crop, soft_crop=opts.soft_crop)
                bart_t.append(bart["seconds"])
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    result = {
        "shape": [int(n_ky), int(nx)],
        "n_coils": int(c),
        "n_acs": int(len(lines)),
        "repeats": repeats,
        "options": _fields(opts),
        "ours": {"seconds": float(np.median(ours_t)), "runs": [round(t, 4) for t in ours_t]},
        "merged": ({"seconds": float(np.median(merged_t)), "runs": [round(t, 4) for t in merged_t],
                    "ratio_to_first_set": float(np.median(merged_t) / np.median(ours_t)),
                    "pixels_merged": float((np.abs(merged - ours).sum(0) > 0).mean())}
                   if merge_here else "not run (phase oversampling)"),
        "cpu_count": os.cpu_count(),
        "torch_threads": used_threads,
        "load_avg": [round(v, 2) for v in os.getloadavg()],
    }
    if not have_bart:
        result["bart"] = "not installed"
    else:
        kept_b, kept_o = np.abs(bart["maps"]).sum(0) > 0, np.abs(ours).sum(0) > 0
        both = kept_b & kept_o
        result["bart"] = {"seconds": float(np.median(bart_t)), "runs": [round(t, 4) for t in bart_t],
                          "command": bart["command"]}
        result["ratio"] = result["ours"]["seconds"] / result["bart"]["seconds"]
        inside = both if support is None else both & support
        result["agreement"] = compare_maps(ours, bart["maps"], inside) if inside.any() else None
        result["agreement_all_kept"] = compare_maps(ours, bart["maps"], both) if both.any() else None
        result["crop_mismatch"] = float((kept_b != kept_o).mean())
    if truth is not None:
        result["truth"] = {"ours": compare_maps(ours, truth, support)}
        if merge_here:
            result["truth"]["merged"] = compare_maps(merged, truth, support)
        if have_bart:
            result["truth"]["bart"] = compare_maps(bart["maps"], truth, support)
    return result


def _fields(opts: EspiritOptions) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.__dict__.items()}


def write_bench(result: dict, path: str | Path) -> Path:
    """Write a :func:`bench_coil_maps` result as indented JSON; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
