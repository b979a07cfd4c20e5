"""Bounded fuzz test of the raw-file reader: damaged copies of a small valid file.

100 variants from a fixed seed: byte-level damage of the HDF5 file (random byte
flips anywhere or in its first 4 KiB, where HDF5 keeps most of its structure;
truncations; zeroed blocks) and field-level damage of the acquisition headers
(a random field of random acquisitions set to a random or extreme value, written as
a valid file). Each variant is read by :func:`recon.io.raw.read_raw` in one worker
process under an address-space limit; each must end in a result whose k-space is
finite or in an :class:`~recon.errors.InputError` with one short line, within
:data:`SECONDS_PER_CASE`. The worker reports case by case, so a crash (a segfault in
libhdf5) names the variant that caused it.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recon.io.raw import read_acquisitions, write_raw

SEED = 20261129
N_BYTE_CASES = 60
N_FIELD_CASES = 40
SECONDS_PER_CASE = 10.0
MEMORY_LIMIT = 2 * 2 ** 30
TIMEOUT_S = 400

#: Header fields the field-level cases damage, with the values they draw from.
FIELDS = ("active_channels", "number_of_samples", "center_sample", "flags", "idx.kspace_encode_step_1",
          "idx.phase", "idx.slice", "idx.repetition", "idx.average", "available_channels", "discard_pre",
          "sample_time_us", "position")
EXTREMES = (0, 1, 2, 7, 255, 256, 65535, 2 ** 31 - 1, 2 ** 63, -1.0, float("nan"), float("inf"))

WORKER = r"""
import json, sys, time, traceback
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io.raw import read_raw

for path in sorted(Path(sys.argv[1]).glob("case_*.h5")):
    print(json.dumps({"start": path.name}), flush=True)
    t0 = time.perf_counter()
    try:
        raw = read_raw(path)
        finite = all(np.isfinite(s.kspace).all() and np.isfinite(s.acs).all() for s in raw.slices)
        outcome, message = ("ok" if finite else "non-finite k-space"), f"{len(raw.slices)} slices"
    except InputError as exc:
        outcome, message = "InputError", str(exc)
    except BaseException as exc:
        outcome, message = type(exc).__name__, "".join(traceback.format_exception(exc))[-2000:]
    print(json.dumps({"case": path.name, "outcome": outcome, "message": message,
                      "seconds": time.perf_counter() - t0}), flush=True)
"""


def _byte_damage(blob: bytes, rng: np.random.Generator, kind: int) -> bytes:
    b = bytearray(blob)
    if kind == 0:  # flips anywhere
        for i in rng.integers(0, len(b), rng.integers(1, 9)):
            b[i] ^= int(rng.integers(1, 256))
    elif kind == 1:  # flips in the structure at the start
        for i in rng.integers(0, min(4096, len(b)), rng.integers(1, 5)):
            b[i] ^= int(rng.integers(1, 256))
    elif kind == 2:  # truncation
        return bytes(b[:int(rng.integers(0, len(b)))])
    else:  # a zeroed block
        start = int(rng.integers(0, len(b)))
        end = min(len(b), start + int(rng.integers(1, 512)))
        b[start:end] = bytes(end - start)
    return bytes(b)


def _set_field(headers: np.ndarray, field: str, rows: np.ndarray, value) -> None:
    target = headers
    *parents, name = field.split(".")
    for p in parents:
        target = target[p]
    column = target[name]
    with np.errstate(all="ignore"):
        try:
            column[rows] = np.asarray(value).astype(column.dtype)
        except (OverflowError, ValueError):
            column[rows] = np.iinfo(column.dtype).max if np.issubdtype(column.dtype, np.integer) else np.nan
    target[name] = column


def _field_damage(raw: Path, out: Path, rng: np.random.Generator) -> None:
    _, xml, headers, data = read_acquisitions(raw)
    field = FIELDS[int(rng.integers(len(FIELDS)))]
    rows = rng.choice(len(headers), size=int(rng.integers(1, 4)), replace=False)
    value = EXTREMES[int(rng.integers(len(EXTREMES)))] if rng.random() < 0.5 else int(rng.integers(0, 70000))
    _set_field(headers, field, rows, value)
    if field in ("active_channels", "number_of_samples"):  # keep the stored sizes consistent sometimes
        if rng.random() < 0.5:
            for r in rows:
                c, n = int(headers["active_channels"][r]), int(headers["number_of_samples"][r])
                if c * n <= 10 ** 6:
                    data[r] = (rng.standard_normal((c, n)) + 0j).astype(np.complex64)
    write_raw(out, xml.decode(), headers, data)


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> Path:
    from crunet.cli import main

    d = tmp_path_factory.mktemp("fuzz")
    raw = d / "valid.h5"
    assert main(["simulate", str(raw), "--phases", "2", "--coils", "2", "--matrix", "24", "16", "-R", "4",
                 "--acs", "8", "--slices", "2", "--seed", "1"]) == 0
    rng = np.random.default_rng(SEED)
    blob = raw.read_bytes()
    for i in range(N_BYTE_CASES):
        (d / f"case_{i:03d}.h5").write_bytes(_byte_damage(blob, rng, i % 4))
    for i in range(N_BYTE_CASES, N_BYTE_CASES + N_FIELD_CASES):
        _field_damage(raw, d / f"case_{i:03d}.h5", rng)
    return d


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_reader_survives_damaged_files(variants):
    r = subprocess.run([sys.executable, "-c", WORKER, str(variants)], capture_output=True, text=True,
                       timeout=TIMEOUT_S, preexec_fn=_limit_memory, cwd=Path(__file__).resolve().parents[1])
    records = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    started = [x["start"] for x in records if "start" in x]
    results = [x for x in records if "case" in x]
    last = started[-1] if started else "?"
    assert r.returncode == 0, f"worker died (rc {r.returncode}) on {last}: {r.stderr[-2000:]}"
    assert len(results) == N_BYTE_CASES + N_FIELD_CASES
    bad = [x for x in results if x["outcome"] not in ("ok", "InputError")]
    assert not bad, bad[:3]
    slow = [(x["case"], round(x["seconds"], 1)) for x in results if x["seconds"] > SECONDS_PER_CASE]
    assert not slow, slow
    for x in results:
        if x["outcome"] == "InputError":
            assert "\n" not in x["message"] and len(x["message"]) <= 1000, x
    outcomes = {o: sum(x["outcome"] == o for x in results) for o in ("ok", "InputError")}
    assert outcomes["ok"] > 0 and outcomes["InputError"] > 0, outcomes  # both kinds of ending are exercised
