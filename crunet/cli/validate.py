"""``crunet validate``: every method on held-out patients, in and out of the training acquisitions.

Writes ISMRMRD raw files of the held-out patients (``DataConfig.holdout``) acquired with
the training space (set ``val``) and with the held-out space (set ``xval``: a coil model,
coil counts, noise band and line order no training saw), at each R, then evaluates the
methods on them through the one pipeline; ``<out>/validation.md`` holds the tables and
the in-distribution minus held-out gap. Existing case files in ``--out`` are reused.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from recon.machine import DEVICES


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="validation", help="output folder (default validation)")
    p.add_argument("--methods", nargs="*", default=None,
                   help="methods in table order (default: zf sense lps crunet_ca)")
    p.add_argument("--weights", nargs="+", default=[], metavar="DIR", help="trained weights directories as methods")
    p.add_argument("--accelerations", nargs="+", type=int, default=[4, 8, 10, 24], help="R values (default 4 8 10 24)")
    p.add_argument("--cases", type=int, default=3, help="slices per set and R (default 3)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--figures", action="store_true", help="write the per-slice figures too")
    p.add_argument("--seam-rows", type=int, default=0, metavar="N",
                   help="cross-fade the cut edges of each held-out crop over N rows so the move along y leaves "
                        "no seam (DataConfig.seam_rows; default 0: a seam, as the shipped weights were trained)")
    p.add_argument("--heldout-coils", default=None, metavar="FAMILY[:N,...]",
                   help="the held-out set's coil model instead of dipole x7/15/23: a coil family of "
                        "recon.simulate.coils and its coil counts, e.g. bart:8 (BART's simulated sensitivities, "
                        "a coil model another project wrote; needs the bart command); give its own --out")
    p.add_argument("--sets", nargs="+", choices=("val", "xval"), default=["val", "xval"],
                   help="which sets to run (default both)")
    p.add_argument("--oracle-r", nargs="*", type=int, default=[8], metavar="R",
                   help="R values with the oracle-tuned CG-SENSE row (SENSE at 9 Tikhonov weights, 0 to 1, the best "
                        "per case against the ground truth); none: no oracle row (default 8)")
    p.add_argument("--paired-masks", action="store_true",
                   help="write each case twice, with the same lines in every frame and with the lattice moved one "
                        "line per frame (same scene, coils and noise), and report what the moving mask gains each "
                        "method; give its own --out")


def heldout_space(spec: str):
    """``FAMILY[:N,N,...]`` -> the default held-out acquisition space with that coil family and
    those counts (default: the held-out counts); InputError naming what is wrong."""
    from recon.errors import InputError
    from recon.simulate.acquisition import HELDOUT_SPACE

    family, _, counts = spec.partition(":")
    try:
        numbers = tuple(int(c) for c in counts.split(",")) if counts else HELDOUT_SPACE.coil_counts
    except ValueError:
        raise InputError(f"--heldout-coils {spec!r}: coil counts must be integers, e.g. bart:8") from None
    return replace(HELDOUT_SPACE, coil_families=(family,), coil_counts=numbers).validate()


def run(args: argparse.Namespace) -> int:
    from recon.errors import InputError
    from recon.pipeline import compared_methods
    from crunet.validation import run_validation

    if args.cases < 1:
        raise InputError(f"--cases must be >= 1, got {args.cases}")
    methods = compared_methods(args.methods, args.weights)
    from recon.train.config import DataConfig

    cfg = DataConfig(seam_rows=args.seam_rows)
    if args.heldout_coils is not None:
        cfg = replace(cfg, heldout_space=heldout_space(args.heldout_coils))
    run_validation(args.out, methods, tuple(args.weights), cfg=cfg.validate(),
                   accelerations=tuple(args.accelerations), cases=args.cases, device=args.device,
                   figures=args.figures, oracle_accelerations=tuple(args.oracle_r), sets=tuple(args.sets),
                   paired_masks=args.paired_masks)
    print(f"report : {args.out}/validation.md (and validation.json, per set and R: table.md, results.csv)")
    return 0
