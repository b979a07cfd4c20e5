"""``crunet convert``: CMRxRecon2023 cine .mat files -> ISMRMRD raw data (+ ground truth)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("kspace", help="cine_sax.mat / cine_lax.mat, k-space (t, sz, sc, ky, kx)")
    p.add_argument("output", help="ISMRMRD raw file to write (.h5)")
    p.add_argument("--mask", help="mask file (e.g. cine_sax_mask08.mat); needed for fully sampled input")
    p.add_argument("--full", help="fully sampled cine_*.mat for the ground truth (may be the input itself)")
    p.add_argument("--view", choices=("sax", "lax"), default=None,
                   help="slice geometry (default: from the file name, else sax)")
    p.add_argument("--fov", type=float, nargs=2, default=(300.0, 360.0), metavar=("Y_MM", "X_MM"),
                   help="recon field of view in mm (default 300 360; the .mat files carry none)")


def run(args: argparse.Namespace) -> int:
    from recon.io.cmrxrecon import ConvertOptions, convert_cmrx

    check_output(args.output, [args.kspace, args.mask, args.full])
    view = args.view or ("lax" if "lax" in Path(args.kspace).name.lower() else "sax")
    summary = convert_cmrx(args.kspace, args.output, mask_path=args.mask, full_path=args.full,
                           options=ConvertOptions(view=view, fov_mm=tuple(args.fov)))
    print(json.dumps(summary, indent=2))
    return 0


def check_output(output: str, inputs: list[str | None]) -> None:
    """The output can be written (its folder exists, it is not a folder) and is none of the inputs."""
    from recon.errors import InputError

    out = Path(output)
    if out.is_dir():
        raise InputError(f"{out}: is a directory; give a file name for the raw data")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    for name in filter(None, inputs):
        if out.exists() and Path(name).exists() and out.resolve() == Path(name).resolve():
            raise InputError(f"{out}: the output is an input file; write the raw data elsewhere")
