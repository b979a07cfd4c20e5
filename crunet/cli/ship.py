"""``crunet ship``: a training run's weights into ``weights/NAME/`` with their card.

Copies ``RUN/weights`` (safetensors + config + SHA-256 manifest), the run's resolved
config, loss curve and validation figure, and writes ``CARD.md`` (model, data, split,
steps, wall time, machine, validation tables; ``--validation`` adds a ``crunet validate``
report). Given the shipped folder ``weights/NAME`` instead of a run, only the card's
``crunet validate`` section is replaced (``--validation`` required): cards brought onto
one validation run after the run folders are gone. ``--model-set KEY=VALUE`` ships the
run's weights with a setting no parameter depends on changed (the card says so).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="training run folder (crunet train --out), or the shipped weights/NAME "
                                   "to refresh its card's crunet validate section")
    p.add_argument("name", help="weights name (e.g. crunet_ca)")
    p.add_argument("--dest", default=None, help="weights root (default: the project's weights/)")
    p.add_argument("--validation", default=None, metavar="DIR", help="a crunet validate output folder")
    p.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                   help="ship with a CRUNet-MR setting no parameter depends on changed in config.yaml "
                        "(wrap_rows, mean_consistency; e.g. mean_consistency=true); repeatable")


def run(args: argparse.Namespace) -> int:
    import yaml

    from crunet.cards import ship
    from recon.errors import InputError
    from recon.weights import builtin_weights_dirs

    dest = Path(args.dest) if args.dest else builtin_weights_dirs()[0]
    settings = {}
    for item in args.model_set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--model-set takes KEY=VALUE, got {item!r}")
        settings[key.strip()] = yaml.safe_load(value)
    out = ship(args.run, args.name, dest, args.validation, settings or None)
    print(f"weights: {out} (card: {out / 'CARD.md'})")
    return 0
