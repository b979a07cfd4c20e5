"""``crunet train``: train a learned reconstruction from a YAML run config.

Single process::

    crunet train --config configs/cpu/crunet.yaml --out runs/crunet_cpu

Data parallel (one process per GPU, or CPU processes with gloo)::

    torchrun --nproc_per_node 2 -m crunet train --config configs/paper/crunet_ca.yaml

``--resume`` continues the run in ``--out`` from its last checkpoint, with the config
saved there (``--config`` may be omitted; if given it must match it). The module also
runs on its own: ``python -m crunet.cli.train ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recon.machine import DEVICES


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config YAML (model, data, train); see configs/")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--device", choices=DEVICES, default=None,
                   help="override train.device (auto: CUDA when available)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs (changes the lr schedule)")
    p.add_argument("--threads", type=int, default=None,
                   help="override train.threads (CPU threads for torch; the machine's free cores)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="override train.steps_per_epoch")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-time budget: after the first epoch, plan as many epochs as fit (train.max_minutes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines are still printed)")


def _resolve_config(args: argparse.Namespace):
    from recon.errors import InputError
    from recon.train.config import load_run_config, with_overrides
    from recon.train.engine import CONFIG, _same_run

    if args.out:
        out = Path(args.out)
    elif args.config:
        out = Path("runs") / Path(args.config).stem
    else:
        raise InputError("give --config (a new run) or --out with --resume (continue a run)")
    saved = out / CONFIG
    if args.resume:
        if not saved.is_file():
            raise InputError(f"{saved}: no saved config to resume (is {out} a run folder?)")
        cfg = load_run_config(saved)
        if args.config and not _same_run(load_run_config(args.config), cfg):
            raise InputError(f"--config {args.config} differs from the run's saved {saved}; "
                             "resume without --config or start a new --out")
    else:
        if not args.config:
            raise InputError("--config is required for a new run")
        cfg = load_run_config(args.config)
    cfg = with_overrides(cfg, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, device=args.device,
                         max_minutes=args.max_minutes, threads=args.threads)
    return cfg, out


def run(args: argparse.Namespace) -> int:
    from recon.train.engine import train

    cfg, out = _resolve_config(args)
    last = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    if last:
        print(f"run folder: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m crunet.cli.train``), same options as ``crunet train``."""
    from recon.errors import CrunetError

    parser = argparse.ArgumentParser(prog="crunet train", description=__doc__.splitlines()[0])
    add_parser(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CrunetError as exc:
        print(f"crunet train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
