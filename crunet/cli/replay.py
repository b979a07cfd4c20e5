"""``crunet replay``: send a raw file to Gadgetron or ``crunet serve`` and store the images."""

from __future__ import annotations

import argparse
import sys


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="ISMRMRD raw file (.h5)")
    p.add_argument("output", help="HDF5 file for the images (/<group>/image_<series>/...); an incomplete "
                                  "replay (no CLOSE from the server) writes OUTPUT's .partial sibling instead")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9002)
    p.add_argument("--config", "-c", default="default.xml", help="chain name on the server (default default.xml)")
    p.add_argument("--config-script", "-C", help="send this local chain XML file as CONFIG_SCRIPT instead")
    p.add_argument("--group", "-G", default=None, help="output group (default: local date and time)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="give up after this many seconds without a byte from the server (default 600, the "
                        "server's own idle timeout); a server that keeps sending images is waited for")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gadgets.client import partial_path, replay

    script = Path(args.config_script).read_text() if args.config_script else None
    try:
        res = replay(args.input, args.output, args.host, args.port, args.config, script, args.group, args.timeout)
    except KeyboardInterrupt:
        print(f"crunet replay: interrupted; images received so far (if any) are in {partial_path(args.output)}",
              file=sys.stderr)
        return 130
    if res.noise is not None:
        print(f"noise dependency: {_noise_line(res.noise)}")
    for t in res.texts:
        print(f"server: {t}", file=sys.stderr)
    for p in res.problems:
        print(f"crunet replay: {p}", file=sys.stderr)
    if res.output is not None and not res.closed:
        where = f" -> {res.output} (INCOMPLETE: no CLOSE from the server; group '{res.group}')"
    elif res.output is not None:
        where = f" -> {res.output} (group '{res.group}')"
    else:
        where = " (no images, no file written)"
    print(f"{len(res.images)} images in {res.seconds:.1f} s{where}")
    return 0 if res.images and res.closed and not res.texts and not res.problems else 1


def _noise_line(meta: dict) -> str:
    name = f"'{meta.get('measurement', '')}'"
    if meta.get("status") != "success":
        why = meta.get("error", "not stored on the server")
        return f"{name} {why}; the file's own noise scan, if any, is used"
    return (f"{name}: {meta.get('channels')} channels, sigma min {meta.get('min_sigma')} "
            f"mean {meta.get('mean_sigma')} max {meta.get('max_sigma')}")
