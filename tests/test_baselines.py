"""Classical baselines: zero filled, CG-SENSE, L+S (Otazo 2015) and their registry.

Quality is measured on simulated SAX slices with the TRUE coil maps normalised to
unit sum-of-squares. A reconstruction with such maps estimates the image weighted
by the true maps' root-sum-of-squares, ``|x| * sqrt(sum_c |csm_c|^2)`` (what an
RSS-combined fully sampled reference, as in CMRxRecon, shows), so that is the
reference for PSNR/SSIM here (the same as ``SimulatedSlice.reference``).
"""

import numpy as np
import pytest
import torch

from recon.baselines.lps import (OTAZO_LAMBDA_L, OTAZO_LAMBDA_S, auto_thresholds, lps, noise_edge_threshold,
                                  singular_value_threshold, soft_threshold, sure_threshold)
from recon.methods import METHODS, method_options, run_method
from recon.baselines.sense import MAX_LAM, auto_lam, sense
from recon.baselines.zero_filled import zero_filled
from recon.errors import InputError
from recon.fft import fft2c, fftc, ifft2c
from recon.kspace import to_recon_grid
from recon.metrics import psnr, ssim
from recon.noise import calibration_inconsistency, outer_signal_power
from recon.problem import SliceProblem, inconsistency_level, noise_level
from recon.sense import SenseOperator, cg_sense
from recon.simulate.cine import SimulationConfig, simulate_scan

# ---------------------------------------------------------------------------
# helpers


def _crandn(g, *shape):
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def _random_problem(seed=0, t=5, c=4, ny=17, nx=15, noise=0.0):
    """Small odd-sized problem: random unit-SOS maps, every 2nd line + 5 central lines."""
    g = torch.Generator().manual_seed(seed)
    maps = _crandn(g, c, ny, nx)
    maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    mask = torch.zeros(t, ny, dtype=torch.bool)
    mask[:, ::2] = True
    mask[:, ny // 2 - 2:ny // 2 + 3] = True
    truth = _crandn(g, t, ny, nx)
    k = fft2c(truth[:, None] * maps[None]) + noise * _crandn(g, t, c, ny, nx)
    k = k * mask[:, None, :, None]
    return SliceProblem(k.to(torch.complex64), mask, maps.to(torch.complex64)), truth


def _simulated(matrix=96, acceleration=8, seed=0, n_phases=12, n_coils=8, snr=40.0):
    """SliceProblem of a simulated SAX slice with the true maps, and its reference image."""
    cfg = SimulationConfig(n_phases=n_phases, n_coils=n_coils, matrix=(matrix, matrix),
                           acceleration=acceleration, n_acs=24, snr=snr, seed=seed, noise_scan=False)
    sim = simulate_scan(cfg).slices[0]
    ny, nx = sim.image.shape[-2:]
    k = to_recon_grid(sim.kspace, (nx, ny, 1)) * sim.mask[:, None, :, None]
    sos = np.sqrt((np.abs(sim.csm) ** 2).sum(0))
    maps = np.where(sos > 0, sim.csm / np.where(sos > 0, sos, 1), 0)
    p = SliceProblem(kspace=torch.from_numpy(np.ascontiguousarray(k, dtype=np.complex64)),
                     mask=torch.from_numpy(sim.mask),
                     maps=torch.from_numpy(maps.astype(np.complex64)))
    return p, sim.image * sos


_CACHE = {}


def _scored(acceleration, seed):
    """PSNR/SSIM (means over frames) of every method with default options, cached per case."""
    key = (acceleration, seed)
    if key not in _CACHE:
        p, ref = _simulated(acceleration=acceleration, seed=seed)
        calls = []
        out = {}
        for name in ("zf", "sense", "lps"):
            opts = {"progress": lambda i, n: calls.append((i, n))} if name == "lps" else {}
            x = run_method(name, p, **opts)
            out[name] = (float(psnr(ref, x).mean()), float(ssim(ref, x).mean()))
        _CACHE[key] = (out, calls)
    return _CACHE[key]


# ---------------------------------------------------------------------------
# shapes, dtypes, registry


CLASSICAL = ("lps", "sense", "zf")  # "model" needs trained weights: tests/test_learned_method.py


@pytest.mark.parametrize("name", CLASSICAL)
def test_shapes_and_dtype(name):
    p, _ = _random_problem()
    opts = {"n_iter": 3} if name != "zf" else {}
    x = run_method(name, p, **opts)
    assert x.shape == (5, 17, 15)
    assert x.dtype == torch.complex64
    assert torch.isfinite(x.real).all() and torch.isfinite(x.imag).all()


def test_registry_names():
    assert set(METHODS) == {"zf", "sense", "lps", "bart_tv", "model"}
    with pytest.raises(InputError, match="bart_tv, lps, model, sense, zf"):
        run_method("cs", _random_problem()[0])


def test_registry_unknown_option():
    p, _ = _random_problem()
    with pytest.raises(InputError, match="lambda_x"):
        run_method("lps", p, lambda_x=0.1)
    with pytest.raises(InputError, match="valid keys: none"):
        run_method("zf", p, lam=0.1)
    with pytest.raises(InputError, match="lam"):
        run_method("sense", p, n_iters=3)
    assert set(method_options("lps")) == {"lambda_l", "lambda_s", "n_iter", "tol", "progress"}


def test_invalid_values():
    p, _ = _random_problem()
    with pytest.raises(InputError):
        lps(p, lambda_l=-1)
    with pytest.raises(InputError):
        lps(p, n_iter=0)
    with pytest.raises(InputError):
        sense(p, lam=-1)
    for bad in (float("nan"), float("inf"), "strong", None):
        with pytest.raises(InputError, match="lam must be 'auto' or"):
            sense(p, lam=bad)
        with pytest.raises(InputError, match="lambda_s must be 'auto' or"):
            lps(p, lambda_s=bad)
        with pytest.raises(InputError, match="lambda_l must be 'auto' or"):
            lps(p, lambda_l=bad)


def test_lps_tolerance_grows_with_the_measured_model_error():
    """tol='auto' (the default): Otazo's 0.0025 where the maps explain the data down to the
    noise, times the measured ratio of inconsistency to noise elsewhere, so a problem whose
    maps are wrong stops earlier; a bad tol is an error naming it."""
    from recon.baselines.lps import OTAZO_TOL, auto_tol

    assert auto_tol(0.1, 0.1) == OTAZO_TOL and auto_tol(0.1, 0.05) == OTAZO_TOL
    assert auto_tol(0.1, 0.8) == pytest.approx(8 * OTAZO_TOL)
    assert method_options("lps")["tol"] == "auto"
    p, _ = _simulated(matrix=48, seed=2)
    c, ny, nx = p.maps.shape
    ramp = torch.arange(c)[:, None, None] * torch.linspace(0, 1.5, nx)[None, None, :]
    wrong = p.maps * torch.exp(1j * ramp)  # a different phase error in every coil
    bad = SliceProblem(p.kspace, p.mask, wrong.to(torch.complex64), p.noise_sigma)
    counts = {}
    for name, prob in (("right", p), ("wrong", bad)):
        calls = []
        lps(prob, progress=lambda i, n: calls.append(i))
        counts[name] = len(calls)
    assert counts["wrong"] < counts["right"]
    for bad_tol in (-1, "soon", float("nan")):
        with pytest.raises(InputError, match="tol must be 'auto' or"):
            lps(p, tol=bad_tol)


def test_defaults_are_auto():
    assert method_options("sense")["lam"] == "auto"
    assert method_options("lps")["lambda_l"] == "auto" and method_options("lps")["lambda_s"] == "auto"


# ---------------------------------------------------------------------------
# zero filled


def test_zero_filled_is_sense_adjoint():
    p, _ = _random_problem(noise=0.1)
    x = zero_filled(p).numpy()
    k = p.kspace.numpy() * p.mask.numpy()[:, None, :, None]
    expected = (np.conj(p.maps.numpy())[None] * ifft2c(k)).sum(axis=1)
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_zero_filled_fully_sampled_is_exact():
    p, truth = _random_problem()
    full = SliceProblem((fft2c(truth[:, None] * p.maps[None])).to(torch.complex64),
                        torch.ones_like(p.mask), p.maps)
    torch.testing.assert_close(zero_filled(full), truth.to(torch.complex64), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# SENSE


def test_sense_solves_normal_equations():
    p, _ = _random_problem(noise=0.3)
    lam = 0.03
    x = sense(p, lam=lam, n_iter=100, tol=1e-7)
    k, mask, maps = p.batched()
    op = SenseOperator(maps, mask)
    rhs = op.adjoint(k)
    r = op.normal(x[None]) + lam * x[None] - rhs
    assert float(r.norm() / rhs.norm()) < 1e-4


def test_sense_recovers_noise_free_truth_and_reports_progress():
    p, truth = _random_problem()
    calls = []
    x = sense(p, lam=0.0, n_iter=100, tol=1e-7, progress=lambda i, n: calls.append((i, n)))
    assert float((x - truth).norm() / truth.norm()) < 1e-4
    assert calls and calls[0] == (1, 100) and [i for i, _ in calls] == list(range(1, len(calls) + 1))


def test_sense_explicit_numbers_still_work():
    p, _ = _random_problem(noise=0.3)
    k, mask, maps = p.batched()
    expected = cg_sense(k[0][:, None], maps.expand(5, *maps.shape[1:]), mask[0][:, None], lam=0.03, n_iter=30)[:, 0]
    torch.testing.assert_close(sense(p, lam=0.03), expected)
    torch.testing.assert_close(sense(p, lam="0.03"), expected)
    torch.testing.assert_close(run_method("sense", p, lam=0.03), expected)


def test_sense_auto_lam_is_inconsistency_over_signal_power():
    p, _ = _simulated(matrix=64, n_phases=6, snr=40.0)
    sigma = noise_level(p)
    spread = inconsistency_level(p)
    assert spread >= sigma
    assert auto_lam(p) == pytest.approx(min(MAX_LAM, spread ** 2 / outer_signal_power(p.kspace, p.mask, sigma)))
    # a known noise level larger than the measured inconsistency is used as given: more noise, larger lam
    big = [4 * spread, 8 * spread]
    lams = [auto_lam(SliceProblem(p.kspace, p.mask, p.maps, noise_sigma=s_)) for s_ in big]
    for s_, lam in zip(big, lams):
        assert inconsistency_level(SliceProblem(p.kspace, p.mask, p.maps, noise_sigma=s_)) == s_
        assert lam == pytest.approx(min(MAX_LAM, s_ ** 2 / outer_signal_power(p.kspace, p.mask, s_)))
    assert lams[1] > 4 * lams[0] or lams[1] == MAX_LAM
    # no noise: no regularisation
    quiet = SliceProblem(p.kspace, p.mask, p.maps, noise_sigma=0.0)
    assert auto_lam(quiet) == 0.0
    torch.testing.assert_close(sense(quiet), sense(quiet, lam=0.0))


def test_inconsistency_is_the_noise_for_pure_noise_and_grows_with_map_error():
    """Pure noise through exact maps: the calibration inconsistency is sigma. Maps that
    do not fit the data (a coil's map conjugated): it is far above the noise."""
    p, _ = _simulated(matrix=64, n_phases=6, snr=40.0)
    g = torch.Generator().manual_seed(3)
    noise = torch.complex(torch.randn(p.kspace.shape, generator=g), torch.randn(p.kspace.shape, generator=g))
    noise = (noise / 2 ** 0.5).to(torch.complex64) * p.mask[:, None, :, None]
    assert calibration_inconsistency(0.3 * noise, p.mask, p.maps) == pytest.approx(0.3, rel=0.05)
    wrong = p.maps.clone()
    wrong[0] = wrong[0].conj()
    assert calibration_inconsistency(p.kspace, p.mask, wrong) > 3 * calibration_inconsistency(p.kspace, p.mask, p.maps)


@pytest.mark.parametrize("ny, nx", [(40, 32), (41, 33)])
def test_inconsistency_equals_its_2d_fft_definition(ny, nx):
    """The DFT-row computation gives the definition's value: the zero-filled calibration block to
    image space with 2D FFTs, its part outside the maps back to k-space, the energy of the block's
    interior lines per degree of freedom (float64, even and odd grids, an off-centre block)."""
    from recon.fft import fft2c, ifft2c
    from recon.noise import calibration_block

    g = torch.Generator().manual_seed(5)
    t, c = 3, 4
    maps = torch.randn(c, ny, nx, dtype=torch.complex128, generator=g)
    maps = maps / maps.abs().square().sum(0, keepdim=True).sqrt()
    maps[:, :3] = 0  # outside the support: all c dimensions count there
    mask = torch.zeros(t, ny, dtype=torch.bool)
    mask[:, 12:26] = True  # the block, off the centre line for the odd grid's sake
    mask[0, ::5] = True
    k = torch.randn(t, c, ny, nx, dtype=torch.complex128, generator=g) * mask[:, None, :, None]
    lines = calibration_block(mask.numpy())
    inner = lines[4:len(lines) - 4]
    block = torch.zeros_like(k)
    block[:, :, lines] = k[:, :, lines]
    images = ifft2c(block)
    residual = fft2c(images - maps[None] * (maps.conj()[None] * images).sum(1, keepdim=True))[:, :, inner]
    dof = t * len(inner) * nx * (c - float(maps.abs().square().sum(0).mean()))
    expected = float((residual.abs().square().sum() / dof).sqrt())
    assert calibration_inconsistency(k, mask, maps) == pytest.approx(expected, rel=1e-10)


def test_sense_auto_lam_falls_with_noise_and_beats_the_old_constant_at_low_noise():
    """Simulated SAX, true maps: auto follows the SNR (down to the floor the calibration
    inconsistency sets); at SNR 300 the former constant 0.03 over-regularises (the reason
    for auto), at SNR 10 auto is near the best of a grid."""
    lam = {}
    score = {}
    for snr in (10.0, 300.0):
        p, ref = _simulated(matrix=64, acceleration=4, n_phases=6, snr=snr)
        lam[snr] = auto_lam(p)
        score[snr] = {v: float(psnr(ref, sense(p, lam=v)).mean()) for v in ("auto", 0.01, 0.03, 0.1)}
    assert lam[300.0] < lam[10.0] / 10
    assert score[300.0]["auto"] > score[300.0][0.03] + 1
    assert score[10.0]["auto"] > max(score[10.0][v] for v in (0.01, 0.03, 0.1)) - 1


# ---------------------------------------------------------------------------
# L+S


def test_soft_threshold_and_svt():
    x = torch.tensor([3 + 4j, 0.1j, 0], dtype=torch.complex64)
    torch.testing.assert_close(soft_threshold(x, 1.0), torch.tensor([2.4 + 3.2j, 0, 0], dtype=torch.complex64))
    g = torch.Generator().manual_seed(5)
    c = _crandn(g, 300, 7) @ torch.diag(torch.logspace(0, -2, 7).to(torch.complex64)) @ _crandn(g, 7, 7)
    u, s, vh = torch.linalg.svd(c.to(torch.complex128), full_matrices=False)
    for lam in (0.005, 0.05, 0.3):
        ref = (u * torch.clamp(s - lam * s[0], min=0).to(u.dtype)) @ vh
        out = singular_value_threshold(c, lam).to(torch.complex128)
        assert float((out - ref).norm() / ref.norm()) < 1e-5
    assert singular_value_threshold(c, 0.0) is c


def test_sure_threshold_is_near_the_oracle():
    """SURE picks a soft threshold whose error is close to the best one for the truth."""
    g = torch.Generator().manual_seed(11)
    n = 20000
    theta = torch.zeros(n, dtype=torch.complex64)
    idx = torch.randperm(n, generator=g)[:600]
    theta[idx] = 5 * _crandn(g, 600)
    v = 0.5
    z = theta + (v / 2) ** 0.5 * _crandn(g, n)
    tau = sure_threshold(z, v)

    def err(t):
        return float((soft_threshold(z, t) - theta).abs().pow(2).sum())

    oracle = min(err(float(t)) for t in torch.linspace(0, 4, 81))
    assert err(tau) < 1.1 * oracle
    assert sure_threshold(z, 0.0) == 0.0
    assert sure_threshold(3 * z, 9 * v) == pytest.approx(3 * tau, rel=1e-5)


def test_noise_edge_removes_pure_noise():
    g = torch.Generator().manual_seed(12)
    v = 0.3
    noise = (v / 2) ** 0.5 * _crandn(g, 3000, 12)
    tau = noise_edge_threshold(v, 3000, 12)
    assert float(torch.linalg.svdvals(noise).max()) < 1.02 * tau
    assert float(singular_value_threshold(noise, 0.0, tau).norm()) < 0.01 * float(noise.norm())


def test_lps_auto_thresholds_follow_noise_and_scale():
    p, _ = _simulated(matrix=64, n_phases=6, snr=40.0)
    sigma = noise_level(p)
    sigma = max(sigma, inconsistency_level(p))  # the level the thresholds follow
    tl, ts = auto_thresholds(SliceProblem(p.kspace, p.mask, p.maps, noise_sigma=sigma))
    tl2, ts2 = auto_thresholds(SliceProblem(p.kspace, p.mask, p.maps, noise_sigma=2 * sigma))
    assert tl2 == pytest.approx(2 * tl) and ts2 > ts > 0
    a = 1e3
    tl3, ts3 = auto_thresholds(SliceProblem(p.kspace * a, p.mask, p.maps, noise_sigma=a * sigma))
    assert tl3 == pytest.approx(a * tl, rel=1e-5) and ts3 == pytest.approx(a * ts, rel=1e-3)
    # explicit relative numbers still mean what they meant
    x = lps(p, lambda_l=OTAZO_LAMBDA_L, lambda_s=OTAZO_LAMBDA_S, n_iter=3, tol=0)
    assert x.shape == p.kspace[:, 0].shape


def test_lps_auto_beats_the_old_constants_in_noise():
    """At SNR 10 the former relative thresholds leave the noise in; auto removes it."""
    p, ref = _simulated(matrix=64, acceleration=4, n_phases=6, snr=10.0)
    auto = float(psnr(ref, lps(p)).mean())
    old = float(psnr(ref, lps(p, lambda_l=OTAZO_LAMBDA_L, lambda_s=OTAZO_LAMBDA_S)).mean())
    assert auto > old + 1


def test_lps_zero_lambdas_is_landweber():
    """lambda_L = lambda_S = 0: x_{k+1} = x_k + 2 E^H (d - E x_k) from x_1 = E^H d."""
    p, _ = _random_problem(noise=0.2)
    k, mask, maps = p.batched()
    op = SenseOperator(maps, mask)
    x = op.adjoint(k)
    for _ in range(9):
        x = x + 2 * op.adjoint(k - op.forward(x))
    out = lps(p, lambda_l=0.0, lambda_s=0.0, n_iter=10, tol=0)
    assert float((out - x[0]).norm() / x.norm()) < 1e-5


def test_lps_zero_lambdas_converges_to_sense():
    p, truth = _random_problem()
    errors = [float((lps(p, lambda_l=0, lambda_s=0, n_iter=n, tol=0) - truth).norm() / truth.norm())
              for n in (10, 50, 200)]
    assert errors[0] > errors[1] > errors[2]
    x_sense = sense(p, lam=0.0, n_iter=100, tol=1e-7)
    assert errors[2] < 1e-4 and float((x_sense - truth).norm() / truth.norm()) < 1e-4


def test_lps_is_scale_equivariant():
    """Relative thresholds: scaling the data scales the result."""
    p, _ = _random_problem(noise=0.2)
    a = 37.0
    x1 = lps(p, n_iter=10, tol=0)
    x2 = lps(SliceProblem(p.kspace * a, p.mask, p.maps), n_iter=10, tol=0)
    assert float((x2 - a * x1).norm() / (a * x1).norm()) < 1e-5


def test_lps_sparse_term_is_temporally_sparse():
    """lambda_L = 1 removes L (threshold = sigma_1), so x = S = T^H soft(T(.)): its
    temporal spectrum has exact zeros, more of them for a larger lambda_S."""
    p, _ = _random_problem(noise=0.2)

    def zero_fraction(lambda_s):
        x = lps(p, lambda_l=1.0, lambda_s=lambda_s, n_iter=5, tol=0)
        spectrum = fftc(x, dims=(0,)).abs()
        return float((spectrum < 1e-5 * spectrum.max()).float().mean())

    fractions = [zero_fraction(v) for v in (0.0, 0.1, 0.5)]
    assert fractions[0] < 0.01 < fractions[1] < fractions[2]


def test_lps_progress_called_every_iteration():
    p, _ = _random_problem(noise=0.2)
    calls = []
    lps(p, tol=0, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 50) for i in range(1, 51)]


def test_lps_data_residual_decreases():
    p, _ = _random_problem(noise=0.2)
    k, mask, maps = p.batched()
    op = SenseOperator(maps, mask)

    def residual(x):
        return float((op.forward(x[None]) - k).norm() / k.norm())

    r = [residual(lps(p, n_iter=n, tol=0)) for n in (1, 5, 50)]
    assert r[0] > r[1] > r[2]


# ---------------------------------------------------------------------------
# quality on a simulated SAX slice (acceptance criterion: zf < SENSE < L+S in PSNR at R = 8)


@pytest.mark.parametrize("acceleration,seed", [(8, 0), (8, 1)])
def test_psnr_ordering_on_simulated_sax(acceleration, seed):
    scores, calls = _scored(acceleration, seed)
    print(f"\nSAX 96x96, 12 frames, 8 coils, R={acceleration}, seed {seed} (PSNR dB / SSIM, "
          f"ref = |x| * RSS(true maps)):  "
          + "  ".join(f"{m} {v[0]:.2f} / {v[1]:.4f}" for m, v in scores.items())
          + f"  [L+S stopped after {len(calls)} iterations]")
    # SENSE's weight from the calibration inconsistency brought it within 0.2-0.5 dB of L+S
    # here (the 0.5 dB margin below L+S held for the noise-only weight): the order holds
    assert scores["zf"][0] + 0.5 < scores["sense"][0] < scores["lps"][0]
    # the default tol stops early, and progress still counts 1, 2, ... of 50
    assert calls == [(i, 50) for i in range(1, len(calls) + 1)]


# ---------------------------------------------------------------------------
# the measurement of the defaults (tiny sizes)


def test_bench_defaults_runs_on_tiny_cases(tmp_path):
    from crunet.bench.defaults import PAD, Case, format_table, run_bench

    series = tmp_path / "series.npz"
    np.savez(series, cine=np.random.default_rng(0).uniform(0, 1, (3, 40, 40)).astype(np.float32))
    todo = [Case("phantom", 30.0, 4, 4, matrix=32, phases=4),
            Case(str(series), 100.0, 4, 4, matrix=32, phases=4, pad=PAD)]
    rows = run_bench(todo, workdir=tmp_path, lam_grid=(0.0, 0.03), lps_iterations=3)
    assert [r["label"] for r in rows] == ["phantom SNR 30 c4 R4", "series pad 1.6 SNR 100 c4 R4"]
    for r in rows:
        for key in ("zf", "sense_auto", "sense_lam=0", "sense_lam=0.03", "lps_auto", "lps_old", "lam_auto"):
            assert np.isfinite(r[key]), key
        assert r["best_lam"] in (0.0, 0.03) and r["auto_minus_old"] is not None
        assert 0.5 < r["sigma_data"] / r["sigma_scan"] < 2
    table = format_table(rows)
    assert table.count("\n") == 3 and "series pad 1.6 SNR 100 c4 R4" in table
    assert list(tmp_path.iterdir()) == [series]  # the simulated files are removed


# ---------------------------------------------------------------------------- bart_tv (BART's temporal TV)


def test_bart_tv_reconstructs_through_bart_and_beats_zero_filling():
    from recon.coils.bart_io import bart_executable
    from tests.conftest import missing_tool

    if bart_executable() is None:
        missing_tool("bart", "bart")
    p, ref = _simulated(matrix=64, n_phases=6, n_coils=6)
    x = run_method("bart_tv", p, iterations=20)
    assert x.shape == p.kspace[:, 0].shape and x.dtype == torch.complex64
    assert np.mean(psnr(ref, x.numpy())) > np.mean(psnr(ref, zero_filled(p).numpy())) + 1.0
    assert method_options("bart_tv") == {"lam": 0.01, "iterations": 50}


def test_bart_tv_refuses_what_it_cannot_compare(monkeypatch):
    import recon.coils.bart_io as bio

    p, _ = _random_problem()  # odd sizes
    if bio.bart_executable() is not None:
        with pytest.raises(InputError, match="odd side"):
            run_method("bart_tv", p)
    with pytest.raises(InputError, match="lam must be > 0"):
        run_method("bart_tv", p, lam=0.0)
    monkeypatch.setattr(bio, "bart_executable", lambda: None)
    with pytest.raises(InputError, match="'bart' is not installed"):
        run_method("bart_tv", _random_problem(ny=16, nx=14)[0])
