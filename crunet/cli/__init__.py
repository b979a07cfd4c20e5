"""The ``crunet`` command: one console script, one subcommand per job.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``crunet --help`` stays fast. Errors on bad input (:class:`InputError`) are
printed as one short line naming the problem and exit with status 2 (so does running
out of memory); ``crunet recon-file`` exits 1 when some slices failed and the others
were written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from recon import __version__
from recon.errors import CrunetError

#: subcommand -> (module, one-line help). Order is the order of ``crunet --help``.
COMMANDS = {
    "simulate": ("crunet.cli.simulate", "simulate a multi-coil cine scan and write ISMRMRD raw data"),
    "inspect": ("crunet.cli.inspect", "read an ISMRMRD raw file and summarise it per slice"),
    "convert": ("crunet.cli.convert", "convert CMRxRecon2023 cine .mat files to ISMRMRD raw data"),
    "recon-file": ("crunet.cli.recon_file", "reconstruct every slice of a raw file into ISMRMRD images"),
    "evaluate": ("crunet.cli.evaluate", "compare methods on data with ground truth: table, statistics, figures"),
    "report": ("crunet.cli.report", "the paper's evaluation on the held-out real series: tables per R, figures, "
               "regions, bank depth (markdown + PNG)"),
    "validate": ("crunet.cli.validate", "every method on held-out patients with training and held-out acquisitions, per R"),
    "ship": ("crunet.cli.ship", "copy a training run's weights into weights/NAME with their card (CARD.md)"),
    "train": ("crunet.cli.train", "train a learned reconstruction (CRUNet-MR, CRNN-MRI) from a YAML run config"),
    "serve": ("crunet.cli.serve", "serve Gadgetron's client protocol: gadgetron_ismrmrd_client and MRD App clients "
              "(python-ismrmrd-server's client.py, FIRE, OpenRecon) work unchanged"),
    "replay": ("crunet.cli.replay", "send a raw file to Gadgetron or crunet serve and store the images"),
    "gadget": ("crunet.cli.gadget", "run the external gadget for chains that <connect> to it (debugging, workers)"),
    "recon": ("crunet.cli.recon_chain", "run the Gadgetron chain in-process on a raw file (no network)"),
    "bench": ("crunet.cli.bench", "measure speed: coil maps vs BART ecalib, methods per slice; writes JSON"),
    "demo": ("crunet.cli.demo", "simulate, reconstruct and report on an embedded default dataset"),
}


#: commands that compute with torch and take ``--threads`` (``crunet train`` has its own, in its run config)
THREADED = ("recon-file", "evaluate", "report", "validate", "serve", "gadget", "recon", "bench", "demo")
#: of those, the servers: ``--threads auto`` gives them every usable core (see recon.machine.choose_threads)
SERVERS = ("serve", "gadget")
#: one-shot reconstructions, whose OpenMP threads may spin-wait between operations (libgomp's
#: default): they choose their threads from the machine's load (1 on a busy machine: no
#: OpenMP workers at all), and on an idle one sleeping workers cost time at every operation.
#: Measured (crunet_ca 128 x 128 x 12 frames x 10 coils, bf16, 2 threads, idle 2-core CPU):
#: 0.30 s per forward spinning, 0.43 s with OMP_WAIT_POLICY=PASSIVE; beside a 2-thread
#: training run 0.54 and 0.56 s. Every other command (servers, training, the demo's
#: in-process server) sets PASSIVE: their threads and processes outnumber the cores.
SPINNING = ("recon-file", "recon", "evaluate", "validate", "report", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crunet",
        description="crunet-gadgetron: accelerated cardiac cine reconstruction for Gadgetron.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_parser(p)
        if name in THREADED:
            p.add_argument("--threads", dest="threads_setting", default=None, metavar="auto|N",
                           help="torch CPU threads: auto (the default, or $CRUNET_THREADS): " + (
                               "every core this process may use (lanes share them under load)" if name in SERVERS
                               else "the cores not busy with other work at start (cores minus the 1-minute load)")
                           + ", or a count")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if args.command not in SPINNING:  # before torch is imported; the user's setting wins
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if args.command in THREADED:
            from recon.machine import set_up_process

            set_up_process(args.threads_setting, long_running=args.command in SERVERS)
        return int(importlib.import_module(args._module).run(args) or 0)
    except CrunetError as exc:
        print(f"crunet {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"crunet {args.command}: error: out of memory (the input may declare sizes this machine "
              "cannot hold)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crunet {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    """An error message on one short line (whitespace folded, cut at ``MAX_MESSAGE_CHARS``)."""
    from recon.io.limits import one_line

    return one_line(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
