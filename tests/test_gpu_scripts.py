"""The GPU scripts of ``configs/gpu``: valid shell, and the offline run's set-up up to its CUDA check."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "configs" / "gpu").glob("*.sh"))


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script: Path):
    assert _run(["-n", script]).returncode == 0


def _tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel of a one-line module ``crunet_bundle_probe``."""
    folder.mkdir(parents=True)
    path = folder / "crunet_bundle_probe-1.0-py3-none-any.whl"
    info = "crunet_bundle_probe-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("crunet_bundle_probe.py", "VALUE = 1\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: crunet-bundle-probe\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_offline_refuses_a_bundle_without_wheels(tmp_path: Path):
    (tmp_path / "bundle" / "data").mkdir(parents=True)
    res = _run([ROOT / "configs/gpu/offline.sh", tmp_path / "bundle", tmp_path / "out"])
    assert res.returncode == 2 and "holds no wheels" in res.stderr


def test_offline_refuses_an_unknown_step(tmp_path: Path):
    res = _run([ROOT / "configs/gpu/offline.sh", tmp_path, tmp_path / "out", "everything"])
    assert res.returncode == 2 and "all, train or bench" in res.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script would train for minutes")
def test_offline_installs_the_bundle_links_the_series_and_stops_without_cuda(tmp_path: Path):
    bundle = tmp_path / "bundle"
    _tiny_wheel(bundle / "wheels")
    (bundle / "data").mkdir()
    (bundle / "data" / "patient_a.npz").write_bytes(b"x")
    (bundle / "data" / "from_repository.txt").write_text("sunnybrook_SCD0000401_sax_cine.npz\n")
    site, data = tmp_path / "site", tmp_path / "series"
    res = _run([ROOT / "configs/gpu/offline.sh", bundle, tmp_path / "out", "train", "1"],
               env={"PYTHON": sys.executable, "CRUNET_SITE": str(site), "CRUNET_BUNDLE_DATA": str(data)})
    assert (site / "crunet_bundle_probe.py").is_file()  # the bundle's wheels, in the private folder
    assert "project importable" in res.stdout
    assert (data / "patient_a.npz").resolve() == (bundle / "data" / "patient_a.npz").resolve()
    held_out = data / "sunnybrook_SCD0000401_sax_cine.npz"  # taken from the repository's data/
    assert held_out.resolve() == (ROOT / "data" / "sunnybrook_SCD0000401_sax_cine.npz").resolve()
    assert res.returncode != 0 and "no CUDA device" in res.stderr
    assert not (tmp_path / "out" / "crunet_ca_paper.tar.gz").exists()
