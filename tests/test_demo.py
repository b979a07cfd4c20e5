"""The demo behind `make demo`: the shipped real series through `crunet serve`, every chain,
report and figures (small sizes here; the tiny test weights stand in for crunet_ca)."""

from dataclasses import replace

import numpy as np
import pytest

from crunet.demo import CHAINS, DEFAULT_CONFIG, demo_series, run_demo


def test_image_source_names_the_shipped_series_or_refuses(tmp_path):
    from recon.errors import InputError
    from recon.simulate.realdata import HELDOUT_SERIES, image_source

    assert image_source("phantom") == "phantom"
    assert image_source("real").endswith(HELDOUT_SERIES) and image_source(image_source("real")) == image_source("real")
    for bad in ("nope.npz", str(tmp_path)):
        with pytest.raises(InputError, match="neither 'phantom', 'real'"):
            image_source(bad)


def test_demo_series_is_shipped_with_its_licence():
    path = demo_series()
    cine = np.load(path)["cine"]
    assert cine.shape == (2, 20, 256, 256) and cine.dtype == np.int16
    readme = (path.parent / "README.md").read_text()
    assert "CC0" in readme and "Radau" in readme and "SCD0000401" in readme


def test_the_demo_patient_is_held_out_of_training():
    from recon.train.config import DataConfig

    assert "sunnybrook_SCD0000401_sax_cine" in DataConfig().holdout
    assert DEFAULT_CONFIG.coil_family == "dipole"  # the held-out coil model


def test_demo_runs_every_chain_and_reports(tmp_path):
    cfg = replace(DEFAULT_CONFIG, source=str(demo_series()), n_slices=1, n_phases=4, matrix=(48, 48))
    lines = []
    report = run_demo(tmp_path, cfg, log=lines.append)
    assert report["images_returned"] == {label: 4 for label in CHAINS.values()}
    assert {r["method"] for r in report["results"]} == set(CHAINS.values())
    assert set(report["means"]) == set(CHAINS.values())
    assert "crunet_ca" in report["verdict"]
    assert "fusion ca" in report["image_comments"]["crunet_ca"] and "sha256:" in report["image_comments"]["crunet_ca"]
    md = (tmp_path / "report.md").read_text()
    assert md.count("| mean |") == len(CHAINS) and report["verdict"] in md
    assert (tmp_path / "slice0.png").stat().st_size > 10_000
    assert (tmp_path / "raw.h5").is_file() and (tmp_path / "images.h5").is_file()
