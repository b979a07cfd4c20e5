"""``crunet recon-file``: reconstruct every slice of an ISMRMRD raw file into ISMRMRD images."""

from __future__ import annotations

import argparse
import sys

from crunet.cli.options import add_coil_options
from recon.machine import DEVICES


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="ISMRMRD raw file (.h5)")
    p.add_argument("output", help="HDF5 file for the images (/<group>/image_<series>/...)")
    p.add_argument("--method", default=None,
                   help="crunet_ca (default: trained CRUNet-MR w/ CA) or other installed weights by name "
                        "(crunet, crunet_conv, crnn; see weights/README.md), zf, sense, lps, or model "
                        "(implied by --weights); options as name:key=value,... (sense:lam=0.01, "
                        "crunet_ca:precision=fp32)")
    p.add_argument("--weights", help="a trained weights directory (or name) to run as method model")
    add_coil_options(p)
    p.add_argument("--virtual-coils", type=int, default=0, metavar="N",
                   help="compress the coils to N SVD virtual coils first (faster for large arrays; 0: every coil)")
    p.add_argument("--image-type", choices=("magnitude", "complex"), default="magnitude")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto (default): CUDA when available, else CPU")
    p.add_argument("--group", default="dataset", help="output group (default dataset)")
    p.add_argument("--series", type=int, default=1, help="image_series_index (default 1)")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 every slice written, 1 some slices failed and the others were
    written, 2 (an :class:`InputError` from here) nothing written or bad arguments."""
    from recon.errors import InputError
    from recon.io.images import check_appendable, write_images
    from recon.io.limits import one_line, short_list
    from recon.io.raw import read_raw
    from recon.pipeline import DEFAULT_METHOD, ReconConfig, slice_to_images

    method, options = method_and_options(args.method, args.weights, DEFAULT_METHOD)
    cfg = ReconConfig(method=method, coil_method=args.coil_method, coil_second_set=not args.first_set_only,
                      device=args.device, image_type=args.image_type, series_index=args.series, options=options,
                      virtual_coils=args.virtual_coils)
    check_paths(args.input, args.output)
    if not args.group.strip("/ "):
        raise InputError(f"--group must name an HDF5 group for the images, got {args.group!r}")
    cfg.check_ready()  # device and weights, before the file is read
    raw = read_raw(args.input, skip_bad_slices=True)
    rx, ry = raw.encoding.recon_matrix[:2]
    check_appendable(args.output, args.group, cfg.series_index, (ry, rx), cfg.image_type)
    failed, index = [], 1
    for z, message in sorted((raw.slice_errors or {}).items()):  # slices that could not be assembled
        failed.append(z)
        print(f"slice {z}: error: {one_line(message)}", file=sys.stderr)
    for s in raw.slices:
        try:
            images, res = slice_to_images(s, cfg, start_index=index)
        except InputError as exc:  # one bad slice does not stop the others
            failed.append(s.slice_index)
            print(f"slice {s.slice_index}: error: {one_line(exc)}", file=sys.stderr)
            continue
        write_images(args.output, images, group=args.group)
        index += len(images)
        print(f"slice {s.slice_index}: {len(images)} images, maps {res.seconds_maps:.2f} s, "
              f"{cfg.method} {res.seconds_method:.2f} s")
    if index == 1:
        raise InputError(f"no images written: every slice failed (slices {short_list(failed)})")
    print(f"wrote {index - 1} images to {args.output} (group '{args.group}', series {cfg.series_index})")
    if failed:
        print(f"failed slices: {short_list(failed)}", file=sys.stderr)
        return 1
    return 0


def check_paths(source: str, output: str) -> None:
    """The input exists and the output can be written (and is not the input), before any work."""
    from pathlib import Path

    import h5py

    from recon.errors import InputError

    src, out = Path(source), Path(output)
    if not src.exists():
        raise InputError(f"{src}: no such file")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise InputError(f"{out}: the output is the input file; images go to another file")
    if out.is_dir():
        raise InputError(f"{out}: is a directory; give a file name for the images")
    if out.exists() and not h5py.is_hdf5(out):
        raise InputError(f"{out}: exists and is not an HDF5 file; refusing to append images to it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{out}: folder {parent} does not exist")


def method_and_options(method: str | None, weights: str | None, default: str) -> tuple[str, dict]:
    """``(method, options)`` from ``--method`` (``name`` or ``name:key=value,...``, parsed by
    :func:`recon.pipeline.parse_method`) and ``--weights`` (``--weights`` alone means method model)."""
    from recon.errors import InputError
    from recon.pipeline import parse_method

    name, options = parse_method(method or (default if not weights else "model"))
    if not weights:
        return name, options
    if name != "model":
        raise InputError(f"--weights runs method model; it does not go with --method {method} "
                         "(installed weights are chosen by name alone: --method crunet_ca)")
    return "model", {**options, "weights": weights}
