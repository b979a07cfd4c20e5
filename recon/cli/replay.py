"""``crunet replay``: send a raw file to Gadgetron or ``crunet serve`` and store the images."""

from __future__ import annotations

import argparse
import sys


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="ISMRMRD raw file (.h5)")
    p.add_argument("output", help="HDF5 file for the images (/<group>/image_<series>/...)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9002)
    p.add_argument("--config", "-c", default="default.xml", help="chain name on the server (default default.xml)")
    p.add_argument("--config-script", "-C", help="send this local chain XML file as CONFIG_SCRIPT instead")
    p.add_argument("--group", "-G", default=None, help="output group (default: local date and time)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the server's CLOSE")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gadgets.client import replay

    script = Path(args.config_script).read_text() if args.config_script else None
    res = replay(args.input, args.output, args.host, args.port, args.config, script, args.group, args.timeout)
    for t in res.texts:
        print(f"server: {t}", file=sys.stderr)
    print(f"{len(res.images)} images in {res.seconds:.1f} s"
          + (f" -> {res.output} (group '{res.group}')" if res.output else " (no images, no file written)"))
    return 0 if res.images and not res.texts else 1
