"""``crunet serve``: a server speaking Gadgetron's client protocol (for gadgetron_ismrmrd_client)."""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=9002, help="TCP port (default 9002, Gadgetron's)")
    p.add_argument("--idle-timeout", type=float, default=600.0,
                   help="close a connection whose client sends nothing for this many seconds (default 600)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run(args: argparse.Namespace) -> int:
    import logging

    from gadgets.configs import available
    from gadgets.server import CrunetServer
    from recon.weights import weights_status

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = CrunetServer(args.host, args.port, args.idle_timeout)
    print(f"crunet serve: listening on {args.host}:{server.port}; chains: {', '.join(available())}",
          flush=True)
    print(f"crunet serve: default method (crunet.xml, default.xml) {weights_status()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
