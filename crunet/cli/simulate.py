"""``crunet simulate``: write a simulated multi-coil cine scan as ISMRMRD raw data."""

from __future__ import annotations

import argparse
import json

from recon.masks import CMRX_ACCELERATIONS
from recon.simulate.acquisition import ORDERINGS
from recon.simulate.coils import COIL_FAMILIES


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="ISMRMRD raw file to write (.h5)")
    p.add_argument("--source", default="phantom",
                   help="'phantom' (default), 'real' (the shipped held-out patient's series, data/) or a real "
                        "magnitude cine series (.npz with array 'cine')")
    p.add_argument("--view", choices=("sax", "lax"), default="sax", help="phantom geometry (default sax)")
    p.add_argument("--slices", type=int, default=1, help="number of slices (default 1)")
    p.add_argument("--phases", type=int, default=12, help="cardiac phases (default 12)")
    p.add_argument("--coils", type=int, default=10, help="receive coils (default 10)")
    p.add_argument("--matrix", type=int, nargs=2, default=(128, 128), metavar=("NY", "NX"),
                   help="reconstructed matrix (default 128 128); readout is oversampled 2x")
    p.add_argument("--fov", type=float, nargs=2, default=(320.0, 320.0), metavar=("Y_MM", "X_MM"),
                   help="field of view in mm (default 320 320)")
    p.add_argument("--acceleration", "-R", type=int, default=8,
                   help=f"keep every R-th ky line besides the ACS (CMRxRecon: {CMRX_ACCELERATIONS}; default 8)")
    p.add_argument("--acs", type=int, default=24, help="fully sampled central lines (default 24)")
    p.add_argument("--shifted-mask", action="store_true",
                   help="shift the sampling lattice by one line per frame (default: same mask in all frames)")
    p.add_argument("--snr", type=float, default=40.0,
                   help="image SNR of the fully sampled coil-combined image: mean over the object / noise std "
                        "(default 40)")
    p.add_argument("--coil-family", choices=COIL_FAMILIES, default="wrap",
                   help="receive array: wrap (anterior + posterior loops), ring (birdcage-like), front_back "
                        "(asymmetric), dipole (point dipoles; held out of training) (default wrap)")
    p.add_argument("--ordering", choices=ORDERINGS, default="segmented",
                   help="line order in the file: segmented (heartbeat, phase, lines) or linear (line by line)")
    p.add_argument("--no-noise-scan", action="store_true", help="omit the noise-calibration acquisitions")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from recon.simulate.cine import SimulationConfig, simulate_to_file
    from recon.simulate.realdata import image_source

    cfg = SimulationConfig(
        n_slices=args.slices, n_phases=args.phases, n_coils=args.coils, matrix=tuple(args.matrix),
        fov_mm=tuple(args.fov), acceleration=args.acceleration, n_acs=args.acs,
        shifted_mask=args.shifted_mask, snr=args.snr, coil_family=args.coil_family, ordering=args.ordering,
        view=args.view, source=image_source(args.source),
        noise_scan=not args.no_noise_scan, seed=args.seed,
    )
    summary = simulate_to_file(cfg, args.output)
    summary.pop("config")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.output} (ground truth in /dataset/ground_truth, true coil maps in /dataset/csm)")
    return 0
