"""CMRxRecon-style line masks."""

import numpy as np
import pytest

from recon.errors import InputError
from recon.masks import (CMRX_ACCELERATIONS, acs_indices, cine_mask, effective_acceleration,
                         estimate_acceleration)


@pytest.mark.parametrize("R", CMRX_ACCELERATIONS)
@pytest.mark.parametrize("n_ky", [246, 128, 97])
def test_cmrx_mask_structure(R, n_ky):
    m = cine_mask(n_ky, R, n_acs=24, n_frames=5)
    assert m.shape == (5, n_ky) and m.dtype == bool
    assert (m == m[0]).all(), "same mask in every frame by default"
    acs = acs_indices(n_ky, 24)
    assert len(acs) == 24 and m[:, acs].all()
    assert acs[0] == n_ky // 2 - 12
    c = n_ky // 2
    outside = np.setdiff1d(np.arange(n_ky), acs)
    expected = (outside - c) % R == 0
    np.testing.assert_array_equal(m[0, outside], expected)
    assert estimate_acceleration(m, acs) == R
    assert m[0, c], "k-space centre sampled"


def test_shifted_masks_cover_kspace():
    m = cine_mask(64, 4, n_acs=8, n_frames=4, shifted=True)
    assert not (m == m[0]).all()
    assert m.any(axis=0).all(), "the R shifted frames together sample every line"
    assert estimate_acceleration(m, acs_indices(64, 8)) == 4


def test_effective_acceleration():
    m = cine_mask(256, 8, n_acs=24)
    n_lines = m.sum()
    assert effective_acceleration(m) == pytest.approx(256 / n_lines)
    assert 4 < effective_acceleration(m) < 8


@pytest.mark.parametrize("kwargs", [dict(acceleration=0), dict(acceleration=2.5), dict(n_acs=300),
                                    dict(n_frames=0), dict(n_acs=-1)])
def test_bad_arguments(kwargs):
    args = dict(n_ky=128, acceleration=4, n_acs=24, n_frames=1) | kwargs
    with pytest.raises(InputError):
        cine_mask(**args)
