"""``crunet evaluate``: methods side by side on raw files with ground truth."""

from __future__ import annotations

import argparse

from crunet.cli.options import add_coil_options
from recon.machine import DEVICES


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="ISMRMRD raw files with /dataset/ground_truth "
                   "(from crunet simulate or crunet convert --full), or with the noise-free "
                   "/dataset/phantom and /dataset/csm of ismrmrd_generate_cartesian_shepp_logan")
    p.add_argument("--out", default="evaluation", help="output folder (default evaluation)")
    p.add_argument("--methods", nargs="*", default=None,
                   help="methods in table order: zf, sense, lps and installed trained weights by name "
                        "(crunet_ca, crunet, crunet_conv, crnn; see weights/README.md); "
                        "default: zf sense lps crunet_ca; zf sense lps when --weights is given")
    p.add_argument("--weights", nargs="+", default=[], metavar="DIR",
                   help="trained weights directories, each a method (labelled by folder name) after --methods")
    add_coil_options(p)
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto (default): CUDA when available, else CPU")
    p.add_argument("--reference-method", default=None,
                   help="method the others are tested against (default: the last one)")
    p.add_argument("--crop", action="store_true", help="CMRxRecon centre crop before scoring")
    p.add_argument("--no-figures", action="store_true", help="skip the per-slice figures")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="keep every row and reconstruction there and reuse them: a later run with one more "
                        "method or new weights runs only those (rows are keyed by file, slice, method "
                        "settings and weights hash)")


def run(args: argparse.Namespace) -> int:
    from crunet.evaluate import EvalConfig, evaluate
    from recon.pipeline import compared_methods

    cfg = EvalConfig(methods=compared_methods(args.methods, args.weights), weights=tuple(args.weights),
                     coil_method=args.coil_method, coil_second_set=not args.first_set_only, crop=args.crop,
                     reference_method=args.reference_method,
                     figures=not args.no_figures, device=args.device, cache=args.cache)
    result = evaluate(args.inputs, args.out, cfg)
    print(f"table  : {result['table']} (and table.csv, results.csv, stats.csv)")
    if result["figures"]:
        print(f"figures: {', '.join(result['figures'])}")
    return 0
