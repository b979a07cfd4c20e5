"""``crunet serve``: a server speaking Gadgetron's client protocol (gadgetron_ismrmrd_client, MRD App clients)."""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, loopback only; localhost = 127.0.0.1 and ::1)")
    p.add_argument("--port", type=int, default=9002, help="TCP port (default 9002, Gadgetron's; 0 = any free)")
    p.add_argument("--idle-timeout", type=float, default=600.0,
                   help="close a connection whose client sends nothing for this many seconds (default 600)")
    p.add_argument("--message-timeout", type=float, default=60.0,
                   help="seconds a whole message may take to arrive, first byte to last (default 60)")
    p.add_argument("--max-message-mb", type=float, default=64.0,
                   help="largest message accepted, in MiB (default 64; an acquisition is well under 8)")
    p.add_argument("--max-queued-slices", type=int, default=4,
                   help="slices of one connection waiting for reconstruction before the server stops reading "
                        "that connection (back-pressure: the client's sends wait; default 4)")
    p.add_argument("--parallel-slices", type=int, default=None, metavar="N",
                   help="slices of one connection reconstructed side by side (default: as many as the device "
                        "runs forwards at once, 2 on a multi-core CPU, 1 on CUDA; 1: lowest latency per slice)")
    p.add_argument("--max-connections", type=int, default=16,
                   help="connections served at once; more are told so and closed (default 16)")
    p.add_argument("--shutdown-grace", type=float, default=30.0,
                   help="on SIGTERM/SIGINT, seconds the slices in progress may take to finish (default 30); "
                        "a second signal aborts them at once")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from gadgets.configs import known
    from gadgets.protocol import MiB, Limits
    from gadgets.server import CrunetServer
    from recon.errors import InputError
    from recon.weights import weights_status

    for name in ("idle_timeout", "message_timeout", "max_message_mb", "max_connections", "max_queued_slices",
                 "parallel_slices"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = Limits(max_message_bytes=int(args.max_message_mb * MiB), message_timeout=args.message_timeout,
                    idle_timeout=args.idle_timeout, max_queued_slices=args.max_queued_slices)
    server = CrunetServer(args.host, args.port, limits=limits, max_connections=args.max_connections,
                          parallel_slices=args.parallel_slices,
                          shutdown_grace=args.shutdown_grace)

    def on_signal(signum, _frame) -> None:
        name = signal.Signals(signum).name
        if server.stopping.is_set():
            print(f"crunet serve: {name} again: aborting the slices in progress", flush=True)
        else:
            print(f"crunet serve: {name}: no new connections; slices in progress may finish within "
                  f"{args.shutdown_grace:g} s, then every client gets TEXT + CLOSE", flush=True)
        server.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"crunet serve: listening on {server.describe()}; chains (name, or MRD App name): {known()}",
          flush=True)
    print(f"crunet serve: default method (crunet.xml, default.xml) {weights_status()}", flush=True)
    try:
        server.serve_forever()
        left = server.wait_sessions(args.shutdown_grace + 15)
    finally:
        server.server_close()
    print("crunet serve: stopped" + (f" ({left} connection(s) did not end in time)" if left else ""), flush=True)
    return 0
