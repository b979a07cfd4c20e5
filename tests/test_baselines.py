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

from recon.baselines.lps import lps, singular_value_threshold, soft_threshold
from recon.baselines.registry import METHODS, method_options, run_method
from recon.baselines.sense import sense
from recon.baselines.zero_filled import zero_filled
from recon.errors import InputError
from recon.fft import fft2c, fftc, ifft2c
from recon.kspace import to_recon_grid
from recon.metrics import psnr, ssim
from recon.problem import SliceProblem
from recon.sense import SenseOperator
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
    assert set(METHODS) == {"zf", "sense", "lps", "model"}
    with pytest.raises(InputError, match="lps, model, sense, zf"):
        run_method("cs", _random_problem()[0])


def test_registry_unknown_option():
    p, _ = _random_problem()
    with pytest.raises(InputError, match="lambda_x"):
        run_method("lps", p, lambda_x=0.1)
    with pytest.raises(InputError, match="valid options: none"):
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
    assert scores["zf"][0] + 0.5 < scores["sense"][0] < scores["lps"][0] - 0.5
    # the default tol stops early, and progress still counts 1, 2, ... of 50
    assert calls == [(i, 50) for i in range(1, len(calls) + 1)]
