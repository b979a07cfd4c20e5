"""Bad input, table-driven: one row per malformed file or argument, through the real command line.

Every row builds its input from one small valid raw file (or CMRxRecon .mat file), runs
``python -m crunet ...`` in a subprocess under an address-space limit
(:data:`MEMORY_LIMIT`) and a wall-clock timeout (:data:`TIMEOUT_S`), and checks what
the README promises: the documented exit status (2 bad input, 1 when some slices
failed and the others were written, 0 for the control rows), an error line naming the
problem, no traceback, and short lines.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.io import flags as F
from recon.io.raw import read_acquisitions, write_raw
from tests.h5damage import grown_table, replace_dataset

#: Address-space limit of each command (a torch import and a small reconstruction need < 1 GiB).
MEMORY_LIMIT = 2 * 2 ** 30
#: Wall-clock limit of each command, generous for a busy 2-core machine (they take 0.3-3 s).
TIMEOUT_S = 90
#: Longest line a command may print on stderr.
MAX_LINE = 1000


@dataclass(frozen=True)
class Case:
    """One row: ``build(base, folder) -> argv`` after ``crunet``; expected exit status and message."""

    name: str
    build: Callable[[dict, Path], list[str]]
    rc: int
    message: str


# ---------------------------------------------------------------------------------- builders


def _raw_with(edit_acqs=None, edit_xml=None):
    """A raw file from the base one with its acquisitions and/or XML edited; argv of ``inspect``."""
    def build(base, d):
        return ["inspect", str(_write_edited(base["raw"], d, edit_acqs, edit_xml))]
    return build


def _recon_with(edit_acqs=None, edit_xml=None, extra=("--method", "zf")):
    """As :func:`_raw_with`, through ``recon-file``."""
    def build(base, d):
        return ["recon-file", str(_write_edited(base["raw"], d, edit_acqs, edit_xml)), str(d / "out.h5"), *extra]
    return build


def _write_edited(raw: Path, d: Path, edit_acqs, edit_xml) -> Path:
    _, xml, headers, data = read_acquisitions(raw)
    data = [a.copy() for a in data]
    if edit_acqs is not None:
        headers, data = edit_acqs(headers, data)
    text = xml.decode() if edit_xml is None else edit_xml(xml.decode())
    return write_raw(d / "in.h5", text, headers, data)


def _h5_with(damage, command="inspect"):
    """The base raw file with its HDF5 structure damaged by ``damage(h5py.File)``."""
    def build(base, d):
        path = d / "in.h5"
        shutil.copy(base["raw"], path)
        with h5py.File(path, "a") as f:
            damage(f)
        args = [str(path)] + ([str(d / "out.h5"), "--method", "zf"] if command == "recon-file" else [])
        return [command, *args]
    return build


def _bytes_file(content: bytes | None, directory: bool = False):
    def build(base, d):
        path = d / "in.h5"
        if directory:
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        return ["inspect", str(path)]
    return build


def _truncated(fraction: float):
    def build(base, d):
        blob = base["raw"].read_bytes()
        path = d / "in.h5"
        path.write_bytes(blob[:int(len(blob) * fraction)])
        return ["inspect", str(path)]
    return build


def _args(*extra, input_garbage: bool = False):
    """``recon-file`` on the base file (or on garbage: arguments are checked before the file) with ``extra``."""
    def build(base, d):
        src = base["raw"]
        if input_garbage:
            src = d / "garbage.h5"
            src.write_bytes(b"never read: the arguments are wrong")
        return ["recon-file", str(src), str(d / "out.h5"), *[a.format(d=d, raw=base["raw"]) for a in extra]]
    return build


def _output_taken(base, d):
    """``recon-file`` into an output whose series 1 holds images of another size."""
    import ismrmrd

    with ismrmrd.Dataset(str(d / "taken.h5"), "dataset", create_if_needed=True) as ds:
        ds.append_image("image_1", ismrmrd.Image.from_array(np.zeros((1, 1, 8, 8), np.float32), transpose=False))
    return ["recon-file", str(base["raw"]), str(d / "taken.h5"), "--method", "zf"]


def _mat(make):
    """``convert`` of a CMRxRecon-like file written by ``make(base, folder) -> (kspace, [extra args])``."""
    def build(base, d):
        path, extra = make(base, d)
        return ["convert", str(path), str(d / "out.h5"), *extra]
    return build


# ------------------------------------------------------------------------------------- edits


def _replace_once(old, new):
    def edit(xml):
        assert old in xml, old
        return xml.replace(old, new, 1)
    return edit


def _phase_max(value):
    return _replace_once("<maximum>2</maximum>\n    <center>1</center>",
                         f"<maximum>{value}</maximum>\n    <center>1</center>")


def _imaging(headers, slice_index=None):
    sel = ~F.is_calibration(headers["flags"]) & ~F.is_noise(headers["flags"])
    if slice_index is not None:
        sel &= headers["idx"]["slice"] == slice_index
    return np.flatnonzero(sel)


def _set_sample(value, slice_index=0, calibration=False):
    def edit(headers, data):
        if calibration:
            i = np.flatnonzero(F.is_calibration(headers["flags"]) & (headers["idx"]["slice"] == slice_index))[0]
        else:
            i = _imaging(headers, slice_index)[0]
        data[i][0, 3] = value
        return headers, data
    return edit


def _every_slice(value):
    def edit(headers, data):
        for s in (0, 1):
            data[_imaging(headers, s)[0]][1, 1] = value
        return headers, data
    return edit


def _strip_calibration(slices=(0, 1)):
    def edit(headers, data):
        sel = np.isin(headers["idx"]["slice"], slices) & ~F.is_noise(headers["flags"])
        headers["flags"][sel] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
        return headers, data
    return edit


def _drop_phase(slice_index, phase):
    def edit(headers, data):
        keep = ~((headers["idx"]["slice"] == slice_index) & (headers["idx"]["phase"] == phase)
                 & ~F.is_noise(headers["flags"]))
        return headers[keep], [a for a, k in zip(data, keep) if k]
    return edit


def _idx(field, value):
    def edit(headers, data):
        headers["idx"][field][_imaging(headers)[3]] = value
        return headers, data
    return edit


def _one_fewer_coil(headers, data):
    i = _imaging(headers)[5]
    headers["active_channels"][i] -= 1
    data[i] = data[i][1:]
    return headers, data


def _long_readout(headers, data):
    i = _imaging(headers)[1]
    headers["number_of_samples"][i] = 100
    data[i] = np.zeros((data[i].shape[0], 100), np.complex64)
    return headers, data


def _partial_readout(headers, data):
    """A 40-sample (partial-echo) readout whose centre sample lies far off the grid."""
    i = _imaging(headers)[1]
    headers["number_of_samples"][i], headers["center_sample"][i] = 40, 60000
    data[i] = np.ascontiguousarray(data[i][:, :40])
    return headers, data


def _no_channels(headers, data):
    headers["active_channels"][:] = 0
    return headers, [np.zeros((0, a.shape[1]), np.complex64) for a in data]


def _noise_only(headers, data):
    keep = F.is_noise(headers["flags"])
    return headers[keep], [a for a, k in zip(data, keep) if k]


def _fully_sampled_unflagged(headers, data):
    """Every line of every frame, no calibration flag: the data of the 'fully sampled' row."""
    from recon.io.acquisitions import slice_to_acquisitions
    from recon.slicedata import Geometry

    rng = np.random.default_rng(0)
    k = (rng.standard_normal((3, 2, 40, 64)) + 1j * rng.standard_normal((3, 2, 40, 64))).astype(np.complex64)
    h, d = slice_to_acquisitions(k, np.ones((3, 40), bool), np.arange(16, 24), 0, Geometry.from_header(headers[-1]))
    h["flags"] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    return h, d


def _unwritten_table(f):
    """The acquisition table replaced by one of 500 rows that were never written."""
    dtype = f["dataset/data"].dtype
    del f["dataset/data"]
    f.create_dataset("dataset/data", shape=(500,), dtype=dtype)


def _short_row(f):
    row = f["dataset/data"][12]
    row["data"] = row["data"][:10]
    f["dataset/data"][12] = row


def _renamed_header_fields(f):
    table = f["dataset/data"][()]
    head = table.dtype["head"]
    names = ["h_" + n for n in head.names]
    new_head = np.dtype({"names": names, "formats": [head[n] for n in head.names]})
    dt = np.dtype([("head", new_head)] + [(n, table.dtype[n]) for n in table.dtype.names if n != "head"])
    new = np.empty(table.shape, dt)
    new["head"] = np.frombuffer(table["head"].tobytes(), new_head)
    for n in table.dtype.names:
        if n != "head":
            new[n] = table[n]
    del f["dataset/data"]
    f.create_dataset("dataset/data", data=new)


# --------------------------------------------------------------------------- CMRxRecon files


def _write_mat73(path, name, arr=None, shape=None):
    dt = np.dtype([("real", "<f4"), ("imag", "<f4")])
    with h5py.File(path, "w", userblock_size=512) as f:
        if arr is None:
            f.create_dataset(name, shape=shape, dtype=dt)
        elif np.iscomplexobj(arr):
            c = np.empty(arr.shape, dt)
            c["real"], c["imag"] = arr.real, arr.imag
            f.create_dataset(name, data=c)
        else:
            f.create_dataset(name, data=arr)
    return path


def _kspace(t=3, z=1, c=2, ky=32, kx=64):
    rng = np.random.default_rng(1)
    return (rng.standard_normal((t, z, c, ky, kx)) + 1j * rng.standard_normal((t, z, c, ky, kx))).astype(np.complex64)


def _mask_file(d, ky=32, kx=64, shape=None):
    line = np.zeros(ky)
    line[::4] = 1
    line[ky // 2 - 4:ky // 2 + 4] = 1
    mask = np.repeat(line[:, None], kx, axis=1) if shape is None else np.ones(shape)
    return _write_mat73(d / "mask.mat", "mask04", mask)


def _mat_unwritten(base, d):
    return _write_mat73(d / "cine_sax.mat", "kspace_full", shape=(12, 10, 10, 246, 512)), []


def _mat_nan(base, d):
    k = _kspace()
    k[2, 0, 1, 4, 4] = np.nan
    return _write_mat73(d / "cine_sax.mat", "kspace_full", k), ["--mask", str(_mask_file(d))]


def _mat_real(base, d):
    return _write_mat73(d / "cine_sax.mat", "kspace_full", _kspace().real.copy()), ["--mask", str(_mask_file(d))]


def _mat_axes(base, d):
    return _write_mat73(d / "cine_sax.mat", "kspace_full", _kspace()[0, 0]), []


def _mat_strings(base, d):
    with h5py.File(d / "cine_sax.mat", "w") as f:
        f.create_dataset("kspace_full", data=np.array([b"abc"] * 4))
    return d / "cine_sax.mat", []


def _mat_mask_shape(base, d):
    return _write_mat73(d / "cine_sax.mat", "kspace_full", _kspace()), ["--mask", str(_mask_file(d, shape=(30, 64)))]


def _mat_full_no_mask(base, d):
    return _write_mat73(d / "cine_sax.mat", "kspace_full", _kspace()), []


def _mat_zero(base, d):
    return _write_mat73(d / "cine_sax.mat", "kspace_sub04", np.zeros_like(_kspace())), []


def _mat_huge(base, d):
    dt = np.dtype([("real", "<f4"), ("imag", "<f4")])
    with h5py.File(d / "cine_sax.mat", "w", userblock_size=512) as f:
        f.create_dataset("kspace_full", shape=(1000, 100, 100, 512, 512), dtype=dt, chunks=(1, 1, 1, 512, 512),
                         compression="gzip")[0, 0, 0] = np.zeros((512, 512), dt)
    return d / "cine_sax.mat", []


def _mat_not_mat(base, d):
    (d / "cine_sax.mat").write_text("MATLAB 5.0 MAT-file, but not really")
    return d / "cine_sax.mat", []


def _mat_good(base, d):
    return _write_mat73(d / "cine_sax.mat", "kspace_full", _kspace()), ["--mask", str(_mask_file(d))]


# ------------------------------------------------------------------------------------- table

CASES = [
    # files that are not ISMRMRD raw data
    Case("missing file", _bytes_file(None), 2, "no such file"),
    Case("directory", _bytes_file(None, directory=True), 2, "is a directory"),
    Case("text file", _bytes_file(b"hello, not HDF5\n" * 10), 2, "not an HDF5 file"),
    Case("empty file", _bytes_file(b""), 2, "not an HDF5 file"),
    Case("truncated to half", _truncated(0.5), 2, "damaged or truncated|cannot open|not an HDF5"),
    Case("truncated by 100 bytes", _truncated(0.999), 2, "damaged or truncated|cannot open|not an HDF5"),
    Case("HDF5 without ISMRMRD group", _h5_with(lambda f: f.move("dataset", "other") or f["other"].__delitem__("xml")),
         2, "not an ISMRMRD file"),
    Case("--group names a dataset", lambda base, d: ["inspect", str(base["raw"]), "--group", "dataset/data"], 2,
         "'dataset/data' is a Dataset, not a group"),
    # header
    Case("no XML header", _h5_with(lambda f: f.__delitem__("dataset/xml")), 2, "no XML header"),
    Case("empty XML dataset", _h5_with(replace_dataset("xml", data=np.zeros(0, "S4"))), 2, "no XML header"),
    Case("XML header of the wrong dtype", _h5_with(replace_dataset("xml", data=np.int64(3))), 2,
         "not a valid ISMRMRD XML header"),
    Case("broken XML", _raw_with(edit_xml=lambda x: x[:len(x) // 2]), 2, "not a valid ISMRMRD XML header"),
    Case("no encoding section",
         _raw_with(edit_xml=lambda x: x[:x.index("<encoding>")] + x[x.index("</encoding>") + 11:]),
         2, "no <encoding> section"),
    Case("radial trajectory", _raw_with(edit_xml=_replace_once("<trajectory>cartesian", "<trajectory>radial")),
         2, "trajectory is 'radial'"),
    Case("matrix 100000^2", _raw_with(edit_xml=lambda x: x.replace("<x>64</x>", "<x>100000</x>", 1)
                                       .replace("<y>40</y>", "<y>100000</y>", 1)),
         2, "encodedSpace matrix 100000 x 100000 x 1 outside the supported 1..4096"),
    Case("negative matrix size", _raw_with(edit_xml=_replace_once("<x>64</x>", "<x>-64</x>")), 2,
         "matrix sizes must be positive"),
    Case("non-numeric field of view", _raw_with(edit_xml=_replace_once("<x>640.0</x>", "<x>wide</x>")), 2,
         "encodedSpace incomplete or not numeric"),
    Case("phase limit 65535", _raw_with(edit_xml=_phase_max(65535)), 2,
         "one slice would hold 65536 frames x 2 coils x 40 x 64 .* more than the supported"),
    Case("phase limit 3999 (short message)", _raw_with(edit_xml=_phase_max(3999)), 2,
         "no acquisitions for phase 3..3999 \\(of 4000 frames declared\\)"),
    Case("phase limit not a number", _raw_with(edit_xml=_phase_max("many")), 2,
         "encodingLimits.phase must hold integer"),
    Case("phase limit beyond 16 bits", _raw_with(edit_xml=_phase_max(99999)), 2,
         "encodingLimits.phase = \\[0, 99999\\] .* not a range"),
    Case("limit minimum above maximum", _raw_with(edit_xml=_replace_once(
        "<minimum>0</minimum>\n    <maximum>2</maximum>", "<minimum>2</minimum>\n    <maximum>1</maximum>")),
        2, "not a range"),
    Case("receiverChannels disagrees",
         _raw_with(edit_xml=_replace_once("<receiverChannels>2<", "<receiverChannels>8<")),
         2, "inconsistent coil counts: header says receiverChannels = 8"),
    Case("receiverChannels absurd",
         _raw_with(edit_xml=_replace_once("<receiverChannels>2<", "<receiverChannels>60000<")),
         2, "receiverChannels = 60000, outside the supported 1..1024"),
    # acquisition table
    Case("acquisition table of the wrong dtype", _h5_with(replace_dataset("data", data=np.arange(12.0))), 2,
         "not an ISMRMRD acquisition table"),
    Case("acquisition table is a group", _h5_with(replace_dataset("data")), 2, "is a Group, not a dataset"),
    Case("empty acquisition table", _h5_with(lambda f: f["dataset/data"].resize((0,))), 2, "holds no acquisitions"),
    Case("acquisition table never written", _h5_with(_unwritten_table), 2, "holds no data \\(never written\\)"),
    Case("a billion acquisitions declared", _h5_with(grown_table(10 ** 9)), 2, "declared, more than the supported"),
    Case("header fields renamed", _h5_with(_renamed_header_fields), 2, "not those of an ISMRMRD AcquisitionHeader"),
    Case("acquisition stores fewer samples", _h5_with(_short_row), 2, "acquisition 12 stores 5 complex samples"),
    Case("mismatched coil counts", _raw_with(_one_fewer_coil), 2, "inconsistent coil counts: acquisition"),
    Case("no active channels", _raw_with(_no_channels), 2, "no active channels|stores"),
    Case("readout longer than the matrix", _raw_with(_long_readout), 2, "more than the encoded matrix x = 64"),
    Case("partial readout off the grid", _raw_with(_partial_readout), 2,
         "readout \\(40 samples, centre 60000\\) does not fit the 64-sample encoded readout"),
    Case("ky index beyond the limits", _raw_with(_idx("kspace_encode_step_1", 5000)), 2,
         "kspace_encode_step_1 = 5000, outside encodingLimits"),
    Case("slice index beyond the limits", _raw_with(_idx("slice", 9)), 2, "slice = 9, outside encodingLimits"),
    Case("phase and repetition both vary", _raw_with(_idx("repetition", 1)), 2,
         "both idx.phase and idx.repetition vary"),
    Case("noise scan only", _raw_with(_noise_only), 2, "holds only a noise scan \\(\\d+ noise acquisitions\\)"),
    # slice data: through recon-file (1 = some slices written, 2 = none)
    Case("no calibration lines, undersampled", _recon_with(_strip_calibration()), 2, "has no calibration lines"),
    Case("no calibration lines in slice 0 only", _recon_with(_strip_calibration((0,))), 1,
         "slice 0 has no calibration"),
    Case("NaN in an imaging line", _recon_with(_set_sample(np.nan)), 1, "slice 0: acquisition\\(s\\) \\d+ hold NaN"),
    Case("Inf in a calibration line", _recon_with(_set_sample(np.inf, 1, calibration=True)), 1,
         "slice 1: acquisition\\(s\\) \\d+ hold NaN or infinite"),
    Case("overflowing samples in every slice", _recon_with(_every_slice(3e38)), 2, "beyond \\+-1e\\+12 \\(overflow\\)"),
    Case("a frame missing in slice 1", _recon_with(_drop_phase(1, 2)), 1, "slice 1 has no acquisitions for phase 2"),
    Case("control: fully sampled without calibration flags", _recon_with(_fully_sampled_unflagged), 0,
         "wrote 3 images"),
    # arguments, checked before the file is read
    Case("--weights missing", _args("--weights", "{d}/nothing", input_garbage=True), 2, "weights directory not found"),
    Case("--weights not a weights folder", _args("--weights", "{d}", input_garbage=True), 2, "manifest missing"),
    Case("--method unknown", _args("--method", "nonsense", input_garbage=True), 2, "unknown method 'nonsense'"),
    Case("--weights with --method zf", _args("--method", "zf", "--weights", "{d}", input_garbage=True), 2,
         "does not go with --method zf"),
    Case("--series beyond 16 bits", _args("--method", "zf", "--series", "65536", input_garbage=True), 2,
         "series_index must be an integer in 0..65535"),
    Case("--series negative", _args("--method", "zf", "--series", "-3", input_garbage=True), 2,
         "series_index must be an integer in 0..65535"),
    Case("output is the input", lambda base, d: ["recon-file", str(base["raw"]), str(base["raw"]), "--method", "zf"],
         2, "the output is the input file"),
    Case("output folder missing",
         lambda base, d: ["recon-file", str(base["raw"]), str(d / "no" / "o.h5"), "--method", "zf"],
         2, "does not exist"),
    Case("output series holds images of another size", _output_taken, 2,
         "series image_1 of group 'dataset' holds 8 x 8 float32 images, these are 40 x 32 float32"),
    Case("--group empty", _args("--method", "zf", "--group", "", input_garbage=True), 2,
         "--group must name an HDF5 group"),
    Case("--series not a number", _args("--method", "zf", "--series", "one"), 2, "invalid int value"),
    # CMRxRecon files
    Case("CMRxRecon dataset never written (1.5 KB declaring 2.7 GB)", _mat(_mat_unwritten), 2,
         "declares shape \\(12, 10, 10, 246, 512\\) but holds no data"),
    Case("CMRxRecon dataset of 2.6e12 samples", _mat(_mat_huge), 2, "is larger than the supported"),
    Case("CMRxRecon NaN", _mat(_mat_nan), 2, "NaN or infinite samples \\(frames 2, slices 0\\)"),
    Case("CMRxRecon real k-space", _mat(_mat_real), 2, "k-space must be complex"),
    Case("CMRxRecon 3 axes", _mat(_mat_axes), 2, "must have 5 axes"),
    Case("CMRxRecon strings", _mat(_mat_strings), 2, "not numbers"),
    Case("CMRxRecon mask of the wrong shape", _mat(_mat_mask_shape), 2, "mask shape"),
    Case("CMRxRecon fully sampled without mask", _mat(_mat_full_no_mask), 2, "fully sampled; give --mask"),
    Case("CMRxRecon all zero", _mat(_mat_zero), 2, "holds only zeros"),
    Case("CMRxRecon not a .mat file", _mat(_mat_not_mat), 2, "neither an HDF5"),
    Case("CMRxRecon output folder missing", lambda base, d: ["convert", str(_mat_good(base, d)[0]),
                                                             str(d / "no" / "raw.h5")], 2, "does not exist"),
    Case("control: CMRxRecon file converts", _mat(_mat_good), 0, '"acquisitions"'),
]


# ----------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from crunet.cli import main

    d = tmp_path_factory.mktemp("base")
    raw = d / "raw.h5"
    assert main(["simulate", str(raw), "--phases", "3", "--coils", "2", "--matrix", "40", "32", "-R", "4",
                 "--acs", "8", "--slices", "2", "--seed", "5"]) == 0
    return {"raw": raw}


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, str, float]:
    """``python -m crunet argv`` under the memory and time limits: ``(rc, stdout, stderr, seconds)``."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crunet", *argv], capture_output=True, text=True, cwd=cwd,
                       timeout=TIMEOUT_S, preexec_fn=_limit_memory)
    return r.returncode, r.stdout, r.stderr, time.perf_counter() - t0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, base, tmp_path):
    argv = case.build(base, tmp_path)
    rc, out, err, _ = run_cli(argv, tmp_path)
    assert "Traceback" not in err, err
    assert rc == case.rc, (rc, out, err)
    lines = err.strip().splitlines()
    assert all(len(line) <= MAX_LINE for line in lines), max(map(len, lines))
    if case.rc == 0:
        assert re.search(case.message, out), out
        return
    named = [line for line in lines if re.search(case.message, line)]
    assert named, err
    if case.rc == 2:
        assert lines[-1].startswith(f"crunet {argv[0]}: error: "), err
        assert not (tmp_path / "out.h5").exists(), "nothing is written on exit status 2"
    else:
        assert named[0].startswith("slice ") and (tmp_path / "out.h5").exists()


def test_cuda_without_cuda(base, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"x")
    rc, _, err, _ = run_cli(["recon-file", str(garbage), str(tmp_path / "o.h5"), "--device", "cuda",
                             "--method", "zf"], tmp_path)
    assert rc == 2 and err.strip().splitlines() == [
        "crunet recon-file: error: reconstruction settings: device 'cuda' requested but CUDA is not "
        "available on this machine "
        "(choose device cpu or auto)"]
