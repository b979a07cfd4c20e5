"""BART's file format and the BART tools we measure against: ``ecalib`` (the reference our
ESPIRiT is checked against) and ``pics`` (compressed sensing, the classical speed and
quality reference of ``crunet bench``).

A BART array ``name`` is two files: ``name.hdr`` (text: ``# Dimensions`` then the
sizes of dimensions 0, 1, ...) and ``name.cfl`` (raw complex64, column-major: the
first dimension varies fastest). For images BART's dimensions are
``(x = readout, y = phase encode, z, coil, map, ...)``, so our ``[c, y, x]`` arrays
are BART ``(x, y, 1, c)`` — the same bytes as C-order ``[c, 1, y, x]``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from recon.errors import InputError


def write_cfl(base: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (indexed in BART's dimension order) as ``base.hdr`` / ``base.cfl``."""
    base = Path(base)
    a = np.asarray(array, dtype=np.complex64)
    dims = list(a.shape) or [1]
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    a.ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: str | Path, ndim: int = 1) -> np.ndarray:
    """Read ``base.hdr`` / ``base.cfl``; returns complex64 indexed in BART's dimension order,
    trailing singleton dimensions dropped beyond the first ``ndim``."""
    base = Path(base)
    hdr, cfl = base.with_suffix(".hdr"), base.with_suffix(".cfl")
    if not hdr.is_file() or not cfl.is_file():
        raise InputError(f"{base}: no BART array (.hdr and .cfl expected)")
    lines = [ln for ln in hdr.read_text().splitlines() if ln.strip()]
    try:
        at = next(i for i, ln in enumerate(lines) if ln.startswith("# Dimensions"))
        dims = [int(d) for d in lines[at + 1].split()]
    except (StopIteration, IndexError, ValueError):
        raise InputError(f"{hdr}: not a BART header (no '# Dimensions' line with sizes)") from None
    dims = dims + [1] * max(0, ndim - len(dims))
    while len(dims) > max(1, ndim) and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(cfl, dtype=np.complex64)
    if data.size != int(np.prod(dims)):
        raise InputError(f"{cfl}: {data.size} values, header says {dims}")
    return data.reshape(dims, order="F")


def images_to_bart(x: np.ndarray) -> np.ndarray:
    """Our ``[c, y, x]`` -> BART ``(x, y, 1, c)``."""
    return np.asarray(x).transpose(2, 1, 0)[:, :, None, :]


def bart_to_images(b: np.ndarray) -> np.ndarray:
    """BART ``(x, y, 1, c[, maps])`` -> our ``[c, y, x]`` (the first map)."""
    b = np.asarray(b)
    b = b.reshape(b.shape[:4] + (-1,))[..., 0] if b.ndim > 4 else b
    return np.ascontiguousarray(b[:, :, 0, :].transpose(2, 1, 0))


def bart_executable() -> str | None:
    """Path of the ``bart`` command, or None when it is not installed."""
    return shutil.which("bart")


def bart_ecalib(kspace: np.ndarray, kernel: tuple[int, int] = (6, 6), calib_size: tuple[int, int] = (24, 24),
                threshold: float = 0.001, crop: float = 0.8, soft_crop: bool = True,
                workdir: str | Path | None = None) -> dict:
    """Run ``bart ecalib -m1`` (with ``-S`` by default, as our ESPIRiT) on zero-filled k-space holding the
    calibration lines.

    Parameters
    ----------
    kspace : complex ``[c, ky, kx]``, centred; BART finds the fully sampled centre.
    kernel, calib_size : ``(ky, kx)`` as in :class:`recon.coils.espirit.EspiritOptions`.
    threshold, crop, soft_crop : BART ``-t``, ``-c``, ``-S``.
    workdir : where the ``.cfl`` files go (a temporary folder by default).

    Returns
    -------
    dict with ``maps`` complex64 ``[c, y, x]``, ``eigenvalues`` float32 ``[y, x]``,
    ``seconds`` (wall time of the ``bart`` process) and ``command``.

    Raises
    ------
    InputError : ``bart`` not installed, or it failed (its output in the message).
    """
    exe = bart_executable()
    if exe is None:
        raise InputError("'bart' is not installed (Debian/Ubuntu package 'bart')")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        write_cfl(tmp / "ksp", images_to_bart(kspace))
        cmd = [exe, "ecalib", "-m", "1", "-k", f"{kernel[1]}:{kernel[0]}:1",
               "-r", f"{calib_size[1]}:{calib_size[0]}:1", "-t", str(threshold), "-c", str(crop)]
        if soft_crop:
            cmd.append("-S")
        cmd += [str(tmp / "ksp"), str(tmp / "sens"), str(tmp / "ev")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise InputError(f"bart ecalib failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        maps = bart_to_images(read_cfl(tmp / "sens", ndim=4))
        ev = read_cfl(tmp / "ev", ndim=2)
    ev = np.ascontiguousarray(np.abs(ev.reshape(ev.shape[0], ev.shape[1], -1)[..., 0]).T, dtype=np.float32)
    return {"maps": maps.astype(np.complex64), "eigenvalues": ev, "seconds": seconds,
            "command": " ".join(["bart"] + cmd[1:-3])}


def bart_sensitivities(n_coils: int, size: int, workdir: str | Path | None = None) -> np.ndarray:
    """BART's simulated receive sensitivities, ``bart phantom -x size -S n_coils``.

    BART's own coil model (not ours): at most 8 elements (the ``bart`` family's
    :data:`recon.simulate.coils.FAMILY_MAX_COILS`) around its phantom's field of view.
    Returns complex64 ``[c, size, size]`` (rows: BART's second dimension, columns: its
    first, as :func:`bart_to_images`), as BART scales them. InputError when ``bart`` is missing or fails, or for too many coils.
    """
    from recon.simulate.coils import FAMILY_MAX_COILS

    if not 1 <= int(n_coils) <= FAMILY_MAX_COILS["bart"]:
        raise InputError(f"BART's simulated sensitivities have 1 to {FAMILY_MAX_COILS['bart']} coils, got {n_coils}")
    if int(size) < 2:
        raise InputError(f"BART sensitivity grid must be >= 2 pixels, got {size}")
    exe = bart_executable()
    if exe is None:
        raise InputError("'bart' is not installed (Debian/Ubuntu package 'bart'); the 'bart' coil family "
                         "uses its simulated sensitivities")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out = Path(tmp) / "sens"
        proc = subprocess.run([exe, "phantom", "-x", str(int(size)), "-S", str(int(n_coils)), str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise InputError(f"bart phantom -S failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return bart_to_images(read_cfl(out, ndim=4)).astype(np.complex64)


#: BART's time dimension (TIME_DIM = 10) and its bit in a regularisation flag mask
BART_TIME_DIM = 10


def bart_pics(kspace: np.ndarray, maps: np.ndarray, regularisation: str = "T:1024:0:0.01", iterations: int = 50,
              workdir: str | Path | None = None) -> dict:
    """Run ``bart pics -R <regularisation> -i <iterations>`` on one cine slice.

    Parameters
    ----------
    kspace : complex ``[t, c, y, x]`` on the recon grid, zeros where not sampled (BART
        takes the sampling pattern from the zeros).
    maps : complex ``[c, y, x]``.
    regularisation : BART ``-R`` (default ``T:1024:0:0.01``: total variation along time,
        dimension 10, weight 0.01 after BART's own scaling of the data).

    Returns dict with ``frames`` complex64 ``[t, y, x]``, ``seconds`` (wall time of the
    ``bart`` process) and ``command``. InputError when ``bart`` is missing or fails, and for
    an odd ``y`` or ``x``: BART's centred FFT puts the centre of an odd axis elsewhere than
    ours (:mod:`recon.fft`), so its image would not be the one our k-space encodes
    (checked: even sizes agree to 2e-5, odd ones not at all).
    """
    exe = bart_executable()
    if exe is None:
        raise InputError("'bart' is not installed (Debian/Ubuntu package 'bart')")
    k = np.asarray(kspace, dtype=np.complex64)
    t, c, ny, nx = k.shape
    if ny % 2 or nx % 2:
        raise InputError(f"bart pics: matrix {ny} x {nx} has an odd side; BART's centred FFT differs from "
                         "ours on odd sizes, so only even matrices are compared")
    dims = [nx, ny, 1, c] + [1] * (BART_TIME_DIM - 4) + [t]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        write_cfl(tmp / "ksp", k.transpose(3, 2, 1, 0).reshape(dims))
        write_cfl(tmp / "sens", images_to_bart(maps))
        cmd = [exe, "pics", "-R", regularisation, "-i", str(iterations), str(tmp / "ksp"), str(tmp / "sens"),
               str(tmp / "rec")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise InputError(f"bart pics failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        rec = read_cfl(tmp / "rec", ndim=BART_TIME_DIM + 1)
    frames = rec.reshape(nx, ny, t).transpose(2, 1, 0)
    return {"frames": np.ascontiguousarray(frames, dtype=np.complex64), "seconds": seconds,
            "command": " ".join(["bart"] + cmd[1:-3])}
