"""``crunet inspect``: read an ISMRMRD raw file through the reader and summarise it."""

from __future__ import annotations

import argparse
import json


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="ISMRMRD raw file (.h5)")
    p.add_argument("--group", default=None, help="dataset group (default: 'dataset' or the only one)")
    p.add_argument("--frame-dim", choices=("auto", "phase", "repetition"), default="auto",
                   help="counter used as the frame axis (default auto)")


def summarise(raw) -> dict:
    """A JSON-able summary of a :class:`recon.io.raw.RawFile`."""
    from recon.io.assemble import CALIBRATION_KEY
    from recon.masks import effective_acceleration

    enc = raw.encoding
    out = {
        "file": str(raw.path), "group": raw.group, "acquisitions": raw.n_acquisitions,
        "ignored_auxiliary": raw.n_ignored,
        "noise_samples": 0 if raw.noise is None else int(raw.noise.shape[1]),
        "encoded_matrix": list(enc.encoded_matrix), "recon_matrix": list(enc.recon_matrix),
        "header_acceleration": list(enc.acceleration), "calibration_mode": enc.calibration_mode,
        "slices": [],
    }
    for s in raw.slices:
        out["slices"].append({
            "slice": s.slice_index, "frames": s.n_frames, "frame_dim": s.frame_dim,
            "coils": s.n_coils, "kspace_shape": list(s.kspace.shape),
            "acceleration": s.acceleration,
            "effective_acceleration": round(effective_acceleration(s.mask), 3),
            "acs_lines": [int(s.acs_lines[0]), int(s.acs_lines[-1])], "n_acs": int(len(s.acs_lines)),
            "calibration": s.extra.get(CALIBRATION_KEY, "flagged"),
            "position_mm": [round(v, 2) for v in s.geometry.position],
        })
    return out


def run(args: argparse.Namespace) -> int:
    from recon.io.raw import read_raw

    raw = read_raw(args.input, group=args.group, frame_dim=args.frame_dim)
    print(json.dumps(summarise(raw), indent=2))
    return 0
