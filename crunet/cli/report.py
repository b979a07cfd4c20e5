"""``crunet report``: the paper's evaluation on the held-out real series, in one command.

Simulates the shipped held-out series (``data/``) at each R through the one forward model,
runs every classical method and every installed learned method through ``crunet evaluate``
and writes ``<out>/README.md`` (tables per R with significance against ``crunet_ca``,
qualitative figures, dynamic/static regions, bank depth; methods not shipped yet are named),
``report.json``, ``regions.png`` and one folder per R (see :mod:`crunet.report`).
"""

from __future__ import annotations

import argparse

from recon.machine import DEVICES


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="docs/results", help="output folder (default docs/results)")
    p.add_argument("--accelerations", nargs="+", type=int, default=None, metavar="R",
                   help="R values (default 4 8 24; with --quick the first given, else 8)")
    p.add_argument("--quick", action="store_true",
                   help="one R and one slice: checks the whole path in minutes (not a result)")
    p.add_argument("--series", default=None, metavar="NPZ",
                   help="cine series (.npz) of a held-out patient (default: the shipped "
                        "data/sunnybrook_SCD0000401_sax_cine.npz, all 11 slices, so that the significance "
                        "test can reach its threshold)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (default): CUDA when available, else CPU")
    p.add_argument("--raw-dir", default=None, metavar="DIR",
                   help="keep the simulated raw files there (default: a temporary folder, removed)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="keep every reconstruction, row and raw file there: a second report runs only the "
                        "methods or weights that are new (default: none, everything runs)")


def run(args: argparse.Namespace) -> int:
    from crunet.report import ReportConfig, run_report

    cfg = ReportConfig(out=args.out, accelerations=tuple(args.accelerations) if args.accelerations else None,
                       quick=args.quick, series=args.series, device=args.device, raw_dir=args.raw_dir,
                       cache=args.cache)
    report = run_report(cfg)
    for name, why in report["missing"].items():
        print(f"{name}: {why}")
    print(f"report : {args.out}/README.md (and report.json, regions.png, r<R>/ per R)")
    return 0
