"""ESPIRiT's second map set and its merge into one set (recon.coils.merge).

The case the merge exists for: an object that fills the field of view along the phase
encodes, so the coil images of the top and bottom rows meet across the periodic
boundary and the true sensitivity jumps there; the first ESPIRiT set smooths the jump.
"""

import numpy as np
import pytest
import torch

from recon.coils import compare_maps, espirit_maps, estimate_maps
from recon.coils.espirit import EspiritOptions
from recon.coils.merge import merge_sets
from recon.kspace import time_average
from recon.errors import InputError
from recon.simulate.acquisition import Acquisition
from recon.simulate.cine import simulate_slice, to_slice_data


def _filled_fov(family: str = "wrap", ny: int = 64, nx: int = 48, frames: int = 6):
    """A slice whose object covers every row (cut by the FOV along y) and its true maps."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    mag = ((np.abs(xx) < 0.8) * (1.0 + 0.3 * np.cos(3 * yy) + 0.2 * xx)).astype(np.float32)
    mag = np.repeat(mag[None], frames, 0)
    acq = Acquisition(matrix=(ny, nx), fov_mm=(240.0, 200.0), frames=frames, n_coils=8, snr=200.0,
                      acceleration=4, n_acs=16, coil_family=family, noise_correlation=0.0)
    sim = simulate_slice(mag, acq, np.random.default_rng(0))
    truth = sim.csm / np.sqrt((np.abs(sim.csm) ** 2).sum(0, keepdims=True))
    return to_slice_data(sim, acq), truth, mag[0] > 0


@pytest.fixture(scope="module")
def filled():
    s, truth, support = _filled_fov()
    return {"slice": s, "truth": truth, "support": support,
            "one": estimate_maps(s, second_set=False), "merged": estimate_maps(s)}


def _rows(ny, nx, rows):
    m = np.zeros((ny, nx), bool)
    m[rows] = True
    return m


def test_merge_recovers_the_sensitivity_jump_at_the_fov_edge(filled):
    truth, sup = filled["truth"], filled["support"]
    ny, nx = sup.shape
    edge = _rows(ny, nx, np.r_[0:3, ny - 3:ny]) & sup
    one = compare_maps(filled["one"], truth, edge)["rel_rms"]
    merged = compare_maps(filled["merged"], truth, edge)["rel_rms"]
    print(f"\nedge rows: first set {one:.3f}, merged {merged:.3f}")
    assert one > 0.15  # the case is the one the merge is for
    assert merged < 0.3 * one


def test_merge_leaves_the_rest_of_the_maps_alone(filled):
    ny, nx = filled["support"].shape
    mid = _rows(ny, nx, slice(ny // 4, 3 * ny // 4))
    np.testing.assert_array_equal(filled["merged"][:, mid], filled["one"][:, mid])
    assert filled["merged"].shape == filled["one"].shape and filled["merged"].dtype == np.complex64
    # unit norm where the object is and the crop keeps everything (ESPIRiT's convention)
    norm = np.sqrt((np.abs(filled["merged"]) ** 2).sum(0))[filled["support"]]
    assert np.median(norm) == pytest.approx(1.0, abs=1e-3)


def test_merge_improves_sense_at_the_edge(filled):
    from recon.methods import run_method
    from recon.pipeline import prepare

    s = filled["slice"]
    ny = filled["support"].shape[0]
    errs = {}
    for name in ("one", "merged"):
        p = prepare(s, maps=filled[name])
        rec = np.abs(run_method("sense", p).numpy())
        # SENSE images carry |<S_est, S_true>| x object; the true images carry the object
        ref = np.abs(run_method("sense", prepare(s, maps=filled["truth"].astype(np.complex64))).numpy())
        rows = np.r_[0:3, ny - 3:ny]
        errs[name] = np.linalg.norm(rec[:, rows] - ref[:, rows]) / np.linalg.norm(ref[:, rows])
    print(f"\nSENSE edge-row error vs true maps: {errs}")
    assert errs["merged"] < 0.5 * errs["one"]


def test_second_set_is_orthogonal_to_the_first_and_weighted_by_its_own_crop(filled):
    from recon.coils.estimate import calibration_region
    from recon.coils import maps_from_acs

    s = filled["slice"]
    ny, nx = filled["support"].shape
    sets = maps_from_acs(calibration_region(s), s.acs_lines, n_ky=ny, shape=(ny, nx), sets=2)
    assert sets.shape == (2, 8, ny, nx)
    np.testing.assert_array_equal(sets[0], filled["one"])
    w1, w2 = (np.sqrt((np.abs(m) ** 2).sum(0)) for m in sets)
    both = (w1 > 0.5) & (w2 > 0.5)
    assert both.any() and (w2 > 0.9).sum() < 0.5 * w2.size
    inner = np.abs((sets[0].conj() * sets[1]).sum(0))[both] / (w1 * w2)[both]
    assert inner.max() < 1e-2


def test_an_object_inside_the_fov_keeps_the_first_set():
    # no second sensitivity anywhere: the maps are exactly the first set (no merge work done)
    ny, nx = 48, 40
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    mag = np.repeat(((xx / 0.6) ** 2 + (yy / 0.6) ** 2 < 1).astype(np.float32)[None], 4, 0)
    acq = Acquisition(matrix=(ny, nx), fov_mm=(240.0, 200.0), frames=4, n_coils=6, snr=100.0, acceleration=4,
                      n_acs=16, noise_correlation=0.0)
    s = to_slice_data(simulate_slice(mag, acq, np.random.default_rng(1)), acq)
    np.testing.assert_array_equal(estimate_maps(s), estimate_maps(s, second_set=False))


def test_time_average_uses_only_the_frames_that_sampled_each_line():
    k = torch.zeros(3, 1, 4, 2, dtype=torch.complex64)
    mask = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    k[0, :, 0], k[1, :, 0], k[2, :, 0] = 1, 2, 3
    k[1, :, 1] = 5
    k[0, :, 2] = 7
    avg, sampled = time_average(k, mask)
    assert sampled.tolist() == [True, True, True, False]
    np.testing.assert_allclose(avg[0, :, 0].real.numpy(), [2, 5, 7, 0])


def test_bad_inputs_are_named():
    sets = np.zeros((2, 3, 8, 6), np.complex64)
    k = np.zeros((3, 8, 6), np.complex64)
    mask = np.ones(8, bool)
    with pytest.raises(InputError, match="map sets"):
        merge_sets(k, mask, sets[0])
    with pytest.raises(InputError, match="k-space"):
        merge_sets(k[:2], mask, sets)
    with pytest.raises(InputError, match="mask"):
        merge_sets(k, mask[:5], sets)
    with pytest.raises(InputError, match="sets must be 1 or 2"):
        EspiritOptions(sets=3).validate()
    with pytest.raises(InputError, match="second_set"):
        estimate_maps(None, sets=2)
    # all-zero second set: the first set back, untouched
    first = (np.random.default_rng(0).standard_normal((3, 8, 6)) + 0j).astype(np.complex64)
    out = merge_sets(k, mask, np.stack([first, np.zeros_like(first)]))
    np.testing.assert_array_equal(out, first)


def test_espirit_two_sets_from_a_calibration_block():
    rng = np.random.default_rng(3)
    calib = (rng.standard_normal((4, 16, 16)) + 1j * rng.standard_normal((4, 16, 16))).astype(np.complex64)
    maps, vals = espirit_maps(calib, (24, 20), sets=2, return_eigenvalues=True)
    assert maps.shape == (2, 4, 24, 20) and vals.shape == (2, 24, 20)
    assert (vals[0] >= vals[1] - 1e-4).all()


@pytest.mark.parametrize("ny", [16, 15])
def test_two_set_reconstruction_solves_its_normal_equations(ny):
    """The two-set CG (signs folded into the maps on an even grid, the centred FFT on an odd
    one) solves (A^H A + lam) X = A^H k, A = M F_y [S_1 S_2], checked with the generic
    centred transforms."""
    from recon.coils.merge import _two_set_cg
    from recon.fft import fftc, ifft2c, ifftc

    g = torch.Generator().manual_seed(5)
    c, nx, lam = 3, 6, 0.5
    sets = torch.randn(2, c, ny, nx, dtype=torch.complex128, generator=g)
    sampled = torch.rand(ny, generator=g) < 0.5
    k = torch.randn(c, ny, nx, dtype=torch.complex128, generator=g) * sampled[:, None]
    x = _two_set_cg(sets, k, sampled, lam, 60)  # [2, y, x]
    m = sampled.to(torch.float64)[:, None]
    coil = ifftc(m * fftc((sets * x[:, None]).sum(0), dims=(-2,)), dims=(-2,))
    lhs = (sets.conj() * coil).sum(1) + lam * x
    rhs = (sets.conj() * ifft2c(m * k)).sum(1)
    torch.testing.assert_close(lhs, rhs, atol=1e-8, rtol=1e-8)
