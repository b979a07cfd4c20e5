"""crunet evaluate and crunet recon-file on a simulated SAX slice at R=8."""

import csv

import h5py
import numpy as np
import pytest

from recon.cli import main
from recon.io import flags as F
from recon.io.raw import read_acquisitions, write_raw
from recon.simulate.cine import SimulationConfig, simulate_to_file


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "sax_r8.h5"
    simulate_to_file(SimulationConfig(n_slices=2, n_phases=8, n_coils=8, matrix=(80, 80), acceleration=8,
                                      seed=1), path)
    return path


def test_evaluate_prints_ordering_and_writes_outputs(raw, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(raw), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PSNR ordering (low -> high): zero-filled < SENSE < L+S" in printed
    with open(out / "table.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(rows["zf"]["psnr_mean"]) < float(rows["sense"]["psnr_mean"]) < float(rows["lps"]["psnr_mean"])
    for name in ("results.csv", "table.md", "stats.csv", "sax_r8_slice0.png", "sax_r8_slice1.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    assert "| L+S |" in table and "DISTS" in table and "Bonferroni" in table
    with open(out / "results.csv") as f:
        res = list(csv.DictReader(f))
    assert len(res) == 6 and all(float(r["dynamic_psnr"]) > 0 for r in res)


def test_evaluate_needs_ground_truth(raw, tmp_path, capsys):
    _, xml, headers, data = read_acquisitions(raw)
    bare = write_raw(tmp_path / "no_gt.h5", xml.decode(), headers, data)
    assert main(["evaluate", str(bare), "--out", str(tmp_path / "e"), "--methods", "zf"]) == 2
    assert "ground truth" in capsys.readouterr().err


def test_recon_file_writes_images_and_survives_a_bad_slice(raw, tmp_path, capsys):
    out = tmp_path / "images.h5"
    assert main(["recon-file", str(raw), str(out), "--method", "zf", "--series", "3"]) == 0
    with h5py.File(out) as f:
        assert f["dataset/image_3/data"].shape == (16, 1, 1, 80, 80)
    # slice 0 without calibration lines: reported, slice 1 still written, exit status 1
    _, xml, headers, data = read_acquisitions(raw)
    headers["flags"][headers["idx"]["slice"] == 0] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    bad = write_raw(tmp_path / "bad.h5", xml.decode(), headers, data)
    out2 = tmp_path / "images2.h5"
    assert main(["recon-file", str(bad), str(out2), "--method", "zf"]) == 1
    err = capsys.readouterr().err
    assert "slice 0" in err and "calibration" in err
    with h5py.File(out2) as f:
        hdr = f["dataset/image_1/header"][()]
        assert np.all(hdr["slice"] == 1) and len(hdr) == 8
