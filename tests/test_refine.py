"""The per-pixel prior weight of the CG-SENSE step after a learned reconstruction (recon.refine)."""

import pytest
import torch

from recon.errors import InputError
from recon.pipeline import prepare
from recon.problem import inconsistency_level
from recon.refine import motion_weight, temporal_variance
from recon.simulate.cine import SimulationConfig, simulate_to_file
from recon.io.raw import read_raw


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    path = tmp_path_factory.mktemp("refine") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=1, n_phases=4, n_coils=4, matrix=(32, 24), n_acs=12,
                                      acceleration=4, noise_scan=False), path)
    return prepare(read_raw(path).slices[0])


def test_temporal_variance_of_a_static_and_of_a_flickering_pixel():
    t, ny, nx = 4, 7, 6
    static = torch.full((t, ny, nx), 2 + 1j, dtype=torch.complex64)
    assert torch.count_nonzero(temporal_variance(static, 1)) == 0
    x = static.clone()
    x[:, 0, 0] += torch.tensor([1, -1, 1, -1], dtype=torch.complex64) * (3 - 4j)  # |amplitude| 5
    exact = torch.zeros(ny, nx)
    exact[0, 0] = 25.0
    torch.testing.assert_close(temporal_variance(x, 1), exact)
    smooth = temporal_variance(x, 3)  # spread over the 3 x 3 neighbourhood, across the periodic edges
    for y, xx in ((0, 0), (ny - 1, 0), (0, nx - 1), (1, 1), (ny - 1, nx - 1)):
        assert smooth[y, xx] == pytest.approx(25.0 / 9)
    assert smooth[3, 3] == 0 and smooth.sum() == pytest.approx(25.0)


def test_temporal_variance_names_bad_input():
    with pytest.raises(InputError, match="odd"):
        temporal_variance(torch.zeros(2, 4, 4, dtype=torch.complex64), 4)
    with pytest.raises(InputError, match=r"\[t, y, x\]"):
        temporal_variance(torch.zeros(4, 4, dtype=torch.complex64))


def test_motion_weight_is_the_map_weight_of_the_network_error(problem):
    """Static images: one weight, s^2 / (static^2 P) + floor with s the inconsistency level;
    where the images change from frame to frame the weight is lower (the data pull harder)."""
    t, ny, nx = problem.kspace.shape[0], *problem.kspace.shape[-2:]
    z = torch.ones(t, ny, nx, dtype=torch.complex64) * 0.5
    s2 = inconsistency_level(problem) ** 2
    w = motion_weight(problem, z, static=0.1, moving=1.0, floor=0.02, window=1)
    torch.testing.assert_close(w, torch.full((ny, nx), s2 / (0.01 * 0.25) + 0.02))
    moving = z.clone()
    moving[:, 5, 5] += torch.linspace(-1, 1, t)
    w = motion_weight(problem, moving, static=0.1, moving=1.0, floor=0.02, window=3)
    assert w[5, 5] < w[15, 15] and w[4, 6] < w[15, 15] and w.min() >= 0.02
    assert torch.isfinite(motion_weight(problem, torch.zeros_like(z))).all()  # zero images: no division by 0


@pytest.mark.parametrize("kwargs,match", [({"static": -1.0}, "static"), ({"moving": float("inf")}, "moving"),
                                          ({"floor": float("nan")}, "floor"),
                                          ({"static": 0.0, "moving": 0.0}, "both be 0")])
def test_motion_weight_names_bad_settings(problem, kwargs, match):
    z = torch.ones(problem.kspace.shape[0], *problem.kspace.shape[-2:], dtype=torch.complex64)
    with pytest.raises(InputError, match=match):
        motion_weight(problem, z, **kwargs)
