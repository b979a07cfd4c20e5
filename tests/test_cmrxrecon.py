"""crunet convert: CMRxRecon2023 cine .mat (v7.3 HDF5) files -> ISMRMRD raw data."""

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from crunet.cli import main
from recon.errors import InputError
from recon.fft import ifft2c
from recon.io.cmrxrecon import convert_cmrx
from recon.io.raw import read_raw, read_reference
from recon.kspace import center_crop, rss
from recon.masks import cine_mask

T, Z, C, KY, KX = 3, 2, 4, 40, 64


def _write_mat73(path, name, arr):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5, complex as (real, imag) compound."""
    with h5py.File(path, "w", userblock_size=512) as f:
        if np.iscomplexobj(arr):
            dt = np.dtype([("real", "<f4"), ("imag", "<f4")])
            c = np.empty(arr.shape, dt)
            c["real"], c["imag"] = arr.real, arr.imag
            f.create_dataset(name, data=c)
        else:
            f.create_dataset(name, data=arr)
    with open(path, "r+b") as fh:  # MATLAB's 512-byte text header
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
    return path


@pytest.fixture
def cmrx(tmp_path, rng):
    k = (rng.standard_normal((T, Z, C, KY, KX)) + 1j * rng.standard_normal((T, Z, C, KY, KX))).astype(np.complex64)
    line = cine_mask(KY, 4, 24)[0]
    mask2d = np.repeat(line[:, None], KX, axis=1).astype(np.float64)
    full = _write_mat73(tmp_path / "cine_sax.mat", "kspace_full", k)
    mask = _write_mat73(tmp_path / "cine_sax_mask04.mat", "mask04", mask2d)
    sub = _write_mat73(tmp_path / "cine_sax_sub.mat", "kspace_sub04", k * line[:, None])
    return dict(k=k, line=line, full=full, mask=mask, sub=sub, dir=tmp_path)


def test_full_plus_mask_with_ground_truth(cmrx):
    out = cmrx["dir"] / "raw.h5"
    summary = convert_cmrx(cmrx["full"], out, mask_path=cmrx["mask"], full_path=cmrx["full"])
    assert summary["acceleration"] == 4 and summary["acs_lines"] == 24 and summary["ground_truth"]
    raw = read_raw(out)
    assert raw.encoding.encoded_matrix == (KX, KY, 1) and raw.encoding.recon_matrix == (KX // 2, KY, 1)
    assert len(raw.slices) == Z
    for z, s in enumerate(raw.slices):
        assert s.n_frames == T and s.n_coils == C and s.acceleration == 4
        np.testing.assert_array_equal(s.mask, np.broadcast_to(cmrx["line"], (T, KY)))
        np.testing.assert_array_equal(s.kspace, cmrx["k"][:, z] * cmrx["line"][:, None])
        assert len(s.acs_lines) == 24
        gt = read_reference(out, "ground_truth", z)
        expected = rss(center_crop(ifft2c(cmrx["k"][:, z]), (KY, KX // 2)))
        np.testing.assert_allclose(gt.real, expected, rtol=1e-4, atol=1e-5)


def test_undersampled_input_mask_read_off_data(cmrx):
    out = cmrx["dir"] / "raw_sub.h5"
    summary = convert_cmrx(cmrx["sub"], out)
    assert summary["acceleration"] == 4 and not summary["ground_truth"]
    s = read_raw(out).slices[1]
    np.testing.assert_array_equal(s.mask[0], cmrx["line"])


def test_v5_mask_and_1d_mask(cmrx):
    line = cine_mask(KY, 8, 8)[0]
    savemat(cmrx["dir"] / "m5.mat", {"mask08": line.astype(np.uint8)[:, None]})
    out = cmrx["dir"] / "raw8.h5"
    summary = convert_cmrx(cmrx["full"], out, mask_path=cmrx["dir"] / "m5.mat")
    assert summary["acceleration"] == 8 and summary["acs_lines"] == 8
    np.testing.assert_array_equal(read_raw(out).slices[0].mask[0], line)


def test_cli_convert_and_errors(cmrx, capsys):
    out = cmrx["dir"] / "cli.h5"
    assert main(["convert", str(cmrx["full"]), str(out), "--mask", str(cmrx["mask"]),
                 "--full", str(cmrx["full"])]) == 0
    assert read_raw(out).slices[0].n_coils == C
    # fully sampled without a mask: clear error, exit code 2, no traceback
    assert main(["convert", str(cmrx["full"]), str(cmrx["dir"] / "x.h5")]) == 2
    err = capsys.readouterr().err
    assert "fully sampled" in err and "Traceback" not in err


def test_bad_inputs(cmrx):
    d = cmrx["dir"]
    (d / "text.mat").write_text("not a mat file")
    with pytest.raises(InputError, match="neither an HDF5"):
        convert_cmrx(d / "text.mat", d / "o.h5")
    with pytest.raises(InputError, match="no such file"):
        convert_cmrx(d / "missing.mat", d / "o.h5")
    _write_mat73(d / "bad_shape.mat", "kspace_full", np.zeros((3, 4, 5), np.complex64))
    with pytest.raises(InputError, match="5 axes"):
        convert_cmrx(d / "bad_shape.mat", d / "o.h5")
    _write_mat73(d / "wrong_mask.mat", "mask04", np.ones((KY + 2, KX)))
    with pytest.raises(InputError, match="mask shape"):
        convert_cmrx(cmrx["full"], d / "o.h5", mask_path=d / "wrong_mask.mat")
    nocentre = cine_mask(KY, 4, 0)[0]
    nocentre[KY // 2] = False
    _write_mat73(d / "nocal.mat", "mask04", np.repeat(nocentre[:, None], KX, 1).astype(float))
    with pytest.raises(InputError, match="no calibration block"):
        convert_cmrx(cmrx["full"], d / "o.h5", mask_path=d / "nocal.mat")
    _write_mat73(d / "real.mat", "kspace_full", np.zeros((T, Z, C, KY, KX), np.float32))
    with pytest.raises(InputError, match="must be complex"):
        convert_cmrx(d / "real.mat", d / "o.h5")


def _declared_only(path, shape, written=None, **kw):
    """A v7.3 file declaring a complex ``shape``; ``written``: index whose data are written (None: nothing)."""
    dt = np.dtype([("real", "<f4"), ("imag", "<f4")])
    with h5py.File(path, "w", userblock_size=512) as f:
        d = f.create_dataset("kspace_full", shape=shape, dtype=dt, **kw)
        if written is not None:
            d[written] = np.ones(d[written].shape, dt)
    return path


def test_datasets_are_checked_before_reading(tmp_path):
    """The 1.5 KB file with an unwritten dataset that cost 2.7 GB and 54 s: now refused at once."""
    import time

    t0 = time.perf_counter()
    p = _declared_only(tmp_path / "unwritten.mat", (12, 10, 10, 246, 512))
    assert p.stat().st_size < 4096
    with pytest.raises(InputError, match="declares shape \\(12, 10, 10, 246, 512\\) but holds no data"):
        convert_cmrx(p, tmp_path / "o.h5")
    assert time.perf_counter() - t0 < 5
    p = _declared_only(tmp_path / "partial.mat", (3, 1, 2, 16, 32), written=0, chunks=(1, 1, 2, 16, 32))
    with pytest.raises(InputError, match="only partly written \\(8192 of 24576 bytes\\)"):
        convert_cmrx(p, tmp_path / "o.h5")
    p = _declared_only(tmp_path / "huge.mat", (1000, 100, 100, 512, 512), written=(0, 0, 0),
                       chunks=(1, 1, 1, 512, 512), compression="gzip")
    with pytest.raises(InputError, match="2.62e\\+12 samples\\) is larger than the supported"):
        convert_cmrx(p, tmp_path / "o.h5")
    p = _declared_only(tmp_path / "slice.mat", (300, 1, 8, 256, 512), written=(0, 0),
                       chunks=(1, 1, 8, 256, 512), compression="gzip")
    with pytest.raises(InputError, match="one slice would hold 300 frames x 8 coils x 256 x 512"):
        convert_cmrx(p, tmp_path / "o.h5")


def test_bad_values_and_types(tmp_path, cmrx):
    k = cmrx["k"].copy()
    k[1, 0, 2, 5, 5] = np.nan
    k[2, 1, 0, 0, 0] = np.inf
    _write_mat73(tmp_path / "nan.mat", "kspace_full", k)
    with pytest.raises(InputError, match="NaN or infinite samples \\(frames 1, 2, slices 0, 1\\)"):
        convert_cmrx(tmp_path / "nan.mat", tmp_path / "o.h5", mask_path=cmrx["mask"])
    _write_mat73(tmp_path / "zero.mat", "kspace_sub04", np.zeros_like(k))
    with pytest.raises(InputError, match="holds only zeros"):
        convert_cmrx(tmp_path / "zero.mat", tmp_path / "o.h5")
    with h5py.File(tmp_path / "text.mat", "w") as f:
        f.create_dataset("kspace_full", data=np.array([b"abc"] * 5))
    with pytest.raises(InputError, match="has type \\|S3, not numbers"):
        convert_cmrx(tmp_path / "text.mat", tmp_path / "o.h5")
    savemat(tmp_path / "big5.mat", {"mask": np.ones((1, 3))})
    with pytest.raises(InputError, match="mask shape"):
        convert_cmrx(cmrx["full"], tmp_path / "o.h5", mask_path=tmp_path / "big5.mat")
