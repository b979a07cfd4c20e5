"""``crunet gadget``: run the external gadget as a listener for ``<connect port=.../>`` chains."""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=18000, help="port named in the chain's <connect> (default 18000)")
    p.add_argument("--host", default="localhost",
                   help="address to bind (default localhost: both 127.0.0.1 and ::1, since Gadgetron "
                        "connects <connect> chains to localhost and tries only the first address it resolves)")
    p.add_argument("--once", action="store_true", help="serve one connection, then exit")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run(args: argparse.Namespace) -> int:
    import logging

    from gadgets.external import listen, serve
    from gadgets.gadget import reconstruct
    from recon.weights import weights_status

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(port: int) -> None:
        where = "127.0.0.1 and ::1" if args.host.lower() in ("localhost", "loopback") else args.host
        print(f"crunet gadget: waiting for Gadgetron on {where}, port {port}; default method "
              f"{weights_status()}", flush=True)

    if args.once:
        listen(args.port, reconstruct, host=args.host, ready=ready)
    else:
        try:
            serve(args.port, reconstruct, host=args.host, ready=ready)
        except KeyboardInterrupt:
            pass
    return 0
