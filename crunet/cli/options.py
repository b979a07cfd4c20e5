"""Command-line options shared by several subcommands (one definition each)."""

from __future__ import annotations

import argparse


def add_coil_options(p: argparse.ArgumentParser) -> None:
    """``--coil-method`` and ``--first-set-only``: how the coil maps are estimated from the ACS
    (read back as :class:`recon.pipeline.ReconConfig`'s ``coil_method`` and ``coil_second_set``)."""
    p.add_argument("--coil-method", choices=("espirit", "walsh"), default="espirit")
    p.add_argument("--first-set-only", action="store_true",
                   help="ESPIRiT's first map set alone (as bart ecalib -m1), without merging the second set "
                        "where the anatomy is cut by the field of view along the phase encodes")
