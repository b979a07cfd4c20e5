"""Shared fixtures: seeded generators and small synthetic data."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see the Makefile)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def shepp_logan_file(tmp_path_factory):
    """`ismrmrd_generate_cartesian_shepp_logan -m 128 -c 8 -a 4 -w 24 -C`: an independent ISMRMRD file
    (interleaved R=4 over 4 repetitions, 24 calibration lines, noise scan, true maps in dataset/csm)."""
    import shutil
    import subprocess

    exe = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
    if exe is None:
        pytest.fail("ismrmrd_generate_cartesian_shepp_logan not found: `make test` installs "
                    "Debian's ismrmrd-tools; install it to run this check")
    d = tmp_path_factory.mktemp("shepp_logan")
    out = d / "sl.h5"
    subprocess.run([exe, "-m", "128", "-c", "8", "-a", "4", "-w", "24", "-C", "-o", str(out)],
                   check=True, capture_output=True, cwd=d)
    return out
