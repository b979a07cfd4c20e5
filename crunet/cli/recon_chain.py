"""``crunet recon``: the Gadgetron chain in-process (no network) for batch work."""

from __future__ import annotations

import argparse
import sys


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="ISMRMRD raw file (.h5)")
    p.add_argument("output", help="HDF5 file for the images (/<group>/image_<series>/...)")
    p.add_argument("--config", "-c", default="crunet.xml",
                   help="chain in xml_configs/ (default crunet.xml: method crunet_ca)")
    p.add_argument("--method", help="override the chain's method (crunet_ca or other installed weights by "
                                    "name, zf, sense, lps, or model with --weights)")
    p.add_argument("--weights", help="override the chain's method with a trained weights directory (method model)")
    p.add_argument("--group", "-G", default="dataset", help="output group (default dataset)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from gadgets.bucket import arrays_to_acquisitions
    from gadgets.chain import ChainError, ChainSession
    from gadgets.configs import gadget_settings, resolve
    from recon.io.header import parse_header
    from recon.io.images import write_images
    from crunet.cli.recon_file import method_and_options
    from recon.io.raw import read_acquisitions

    path = resolve(args.config)
    settings = gadget_settings(path.read_bytes(), source=path.name)
    if args.method or args.weights:
        method, options = method_and_options(args.method, args.weights, settings.method)
        settings = dataclasses.replace(settings, method=method, weights=options.get("weights", ""))
        settings.recon_config()
    _, xml, headers, data = read_acquisitions(args.input)
    session = ChainSession(parse_header(xml, source=args.input), settings)
    images, errors = [], []
    for acq in arrays_to_acquisitions(headers, data):
        for out in session.acquisition(acq):
            (errors if isinstance(out, ChainError) else images).append(out)
    for out in session.close():
        (errors if isinstance(out, ChainError) else images).append(out)
    for e in errors:
        print(e.message, file=sys.stderr)
    if images:
        write_images(args.output, images, group=args.group)
    secs = session.recon.seconds
    print(f"{len(images)} images -> {args.output if images else '(nothing written)'}; "
          f"{len(secs)} slices, {sum(secs) / max(len(secs), 1):.2f} s per slice ({settings.method})")
    return 0 if images and not errors else 1
