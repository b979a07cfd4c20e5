"""Noise level of k-space: noise scan, whitening, estimate from the data, the problem's sigma."""

import numpy as np
import pytest
import torch

from recon.errors import InputError
from recon.fft import fft2c
from recon.kspace import to_recon_grid
from recon.masks import cine_mask
from recon.noise import (NOISE_SIGMA_KEY, auto_or_number, calibration_block, check_sigma, estimate_sigma,
                         marchenko_pastur_quantile, noise_covariance, sigma_from_noise_scan, signal_power,
                         whiten, whitened_sigma, whitening_matrix)
from recon.problem import SliceProblem, noise_level
from recon.simulate.coil_noise import correlated_noise
from recon.simulate.coil_noise import noise_covariance as random_covariance
from recon.simulate.coils import coil_sensitivities
from recon.simulate.phantom import cine_phantom

# ---------------------------------------------------------------------------
# helpers


def _noise_free(n_coils=8, ny=96, nx_os=192, nx=96, n_phases=6, seed=0):
    """Noise-free k-space ``[t, c, y, x_os]`` of a phantom in a 2x readout-oversampled FOV."""
    rng = np.random.default_rng(seed)
    image = cine_phantom(n_phases, (ny, nx), "sax", rng).astype(np.complex64)
    padded = np.zeros((n_phases, ny, nx_os), dtype=np.complex64)
    padded[:, :, nx_os // 2 - nx // 2: nx_os // 2 + nx // 2] = image
    csm = coil_sensitivities(n_coils, (ny, nx_os), (320.0, 640.0), rng, body_axes_mm=(105.0, 150.0))
    return fft2c(padded[:, None] * csm[None]).astype(np.complex64), float(np.abs(image).mean())


def _noisy(sigma_rel, seed=0, n_coils=8, acceleration=4):
    """Masked noisy k-space, mask, true per-coil sigma (RMS over coils of the covariance)."""
    k0, mean_mag = _noise_free(n_coils=n_coils, seed=seed)
    rng = np.random.default_rng(seed + 100)
    cov = random_covariance(n_coils, rng)
    sigma = sigma_rel * mean_mag
    k = k0 + sigma * correlated_noise(k0.shape, cov, rng)
    mask = cine_mask(k0.shape[2], acceleration, 24, k0.shape[0])
    true = sigma * np.sqrt(np.trace(cov).real / n_coils)
    return (k * mask[:, None, :, None]).astype(np.complex64), mask, true


_CACHE = {}


def _cached_noisy(sigma_rel):
    if sigma_rel not in _CACHE:
        _CACHE[sigma_rel] = _noisy(sigma_rel)
    return _CACHE[sigma_rel]


# ---------------------------------------------------------------------------
# estimate from the data


@pytest.mark.parametrize("sigma_rel", [0.3, 0.03, 3e-3, 1e-3])
def test_estimate_recovers_known_sigma(sigma_rel):
    """SNR (mean magnitude / sigma) from about 3 to 1000, with and without readout oversampling."""
    k, mask, true = _cached_noisy(sigma_rel)
    oversampled = estimate_sigma(k, mask)
    recon_grid = estimate_sigma(to_recon_grid(k, (96, 96, 1)), mask)
    for est in (oversampled, recon_grid):
        assert abs(est / true - 1) < 0.15, (sigma_rel, est / true)


@pytest.mark.parametrize("sigma_rel", [0.3, 0.03, 3e-3])
def test_quick_estimate_is_close_at_usual_snr(sigma_rel):
    """QUICK_CALIBRATION_COLUMNS (the noise-weighted data consistency's estimate): a smaller
    kernel than the default, within 25 % of the true sigma at SNR 3-300, and it is smaller."""
    from recon.noise import QUICK_CALIBRATION_COLUMNS, calibration_kernel

    k, mask, true = _cached_noisy(sigma_rel)
    k = to_recon_grid(k, (96, 96, 1))
    quick = estimate_sigma(k, mask, columns=QUICK_CALIBRATION_COLUMNS)
    assert abs(quick / true - 1) < 0.25, (sigma_rel, quick / true)
    full, small = (calibration_kernel(k.shape[1], 24, k.shape[3], c) for c in (400, QUICK_CALIBRATION_COLUMNS))
    assert small[0] * small[1] < full[0] * full[1]


def test_estimate_not_fooled_by_very_low_noise():
    """At SNR ~1e5 the signal leaks into the noise eigenvalues: an overestimate, but bounded."""
    k, mask, true = _noisy(1e-5)
    est = estimate_sigma(to_recon_grid(k, (96, 96, 1)), mask)
    assert true < est < 30 * true
    assert estimate_sigma(np.zeros_like(k), mask) == 0.0


def test_estimate_is_scale_equivariant():
    k, mask, _ = _cached_noisy(0.03)
    base = estimate_sigma(k, mask)
    for a in (1e-6, 3.0 - 4.0j, 1e5):
        assert estimate_sigma(k * np.complex64(a), mask) == pytest.approx(abs(a) * base, rel=1e-4)


def test_estimate_accepts_torch_and_rejects_bad_input():
    k, mask, _ = _cached_noisy(0.03)
    assert estimate_sigma(torch.from_numpy(k), torch.from_numpy(mask)) == pytest.approx(estimate_sigma(k, mask))
    few = mask.copy()
    few[:, :] = False
    few[:, 40:43] = True
    with pytest.raises(InputError, match="calibration lines"):
        estimate_sigma(k, few)
    with pytest.raises(InputError, match="mask"):
        estimate_sigma(k, mask[:, :10])
    bad = k.copy()
    bad[0, 0, 48, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        estimate_sigma(bad, mask)


def test_noise_estimate_problem_predicts_the_estimate_from_shapes_alone():
    """``noise_estimate_problem`` says, from the mask and the shapes, exactly when ``estimate_sigma``
    fails: calibration blocks of 0 to 12 lines, 2 to 16 coils, narrow and wide readouts."""
    from recon.noise import noise_estimate_problem

    rng = np.random.default_rng(0)
    for n_lines in range(13):
        for coils, nx in ((2, 8), (4, 6), (16, 40), (8, 3)):
            mask = np.zeros((3, 32), dtype=bool)
            mask[:, ::5] = True
            mask[1:, ::5] = False  # the lattice in the first frame only: no line in every frame
            mask[:, 10:10 + n_lines] = True
            k = (rng.standard_normal((3, coils, 32, nx)) + 0j).astype(np.complex64) * mask[:, None, :, None]
            why = noise_estimate_problem(mask, coils, nx)
            if why is None:
                assert estimate_sigma(k, mask) > 0, (n_lines, coils, nx)
            else:
                with pytest.raises(InputError, match="calibration lines"):
                    estimate_sigma(k, mask)
                assert f"{len(calibration_block(mask))} calibration lines" in why
    assert noise_estimate_problem(torch.ones(3, 32, dtype=torch.bool), 4, 32) is None  # torch masks too


def test_calibration_block():
    mask = np.zeros((3, 20), dtype=bool)
    mask[:, ::4] = True
    mask[:, 8:13] = True
    mask[1, 2] = True
    np.testing.assert_array_equal(calibration_block(mask), np.arange(8, 13))
    mask[2, 10] = False  # the centre run breaks: the longest run that holds y // 2 = 10 is gone
    assert list(calibration_block(mask)) in ([8, 9], [11, 12])
    assert len(calibration_block(np.zeros((2, 8), dtype=bool))) == 0


def test_marchenko_pastur_quantiles_match_random_matrices():
    rng = np.random.default_rng(3)
    m, n = 2000, 200
    x = (rng.standard_normal((m, n)) + 1j * rng.standard_normal((m, n))) / np.sqrt(2)
    eig = np.linalg.eigvalsh(x.conj().T @ x / m)
    for q in (0.1, 0.25, 0.5, 0.9):
        assert marchenko_pastur_quantile(q, n / m) == pytest.approx(np.quantile(eig, q), rel=0.02)


# ---------------------------------------------------------------------------
# noise scan and whitening


def test_sigma_from_noise_scan_and_dwell_times():
    rng = np.random.default_rng(1)
    cov = random_covariance(6, rng)
    noise = 0.2 * correlated_noise((6, 1, 20000), cov, rng)[:, 0]
    true = 0.2 * np.sqrt(np.trace(cov).real / 6)
    assert sigma_from_noise_scan(noise) == pytest.approx(true, rel=0.02)
    # a noise scan sampled twice as fast (half the dwell) has twice the variance per sample
    assert sigma_from_noise_scan(noise, 2.5, 5.0) == pytest.approx(true / np.sqrt(2), rel=0.02)
    assert sigma_from_noise_scan(7 * noise) == pytest.approx(7 * sigma_from_noise_scan(noise), rel=1e-5)
    bad = noise.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        sigma_from_noise_scan(bad)


def test_whitened_sigma_is_the_noise_after_whitening():
    rng = np.random.default_rng(2)
    cov = random_covariance(5, rng)
    scan = correlated_noise((5, 1, 8000), cov, rng)[:, 0]
    data_noise = correlated_noise((5, 1, 8000), cov, rng)[:, 0]
    w = whitening_matrix(scan)
    from recon.noise import noise_scale

    white = noise_scale(2.5, 2.5) * whiten(data_noise, w)
    measured = np.sqrt(np.trace(noise_covariance(white)).real / 5)
    assert whitened_sigma(2.5, 2.5) == pytest.approx(measured, rel=0.03)
    assert whitened_sigma(0.0, 0.0) == 1.0


def test_check_sigma_and_auto_or_number():
    assert check_sigma(0.5) == 0.5 and check_sigma(0) == 0.0
    for bad in (-1.0, float("nan"), float("inf"), "x", None):
        with pytest.raises(InputError):
            check_sigma(bad)
    assert auto_or_number("auto", "lam") is None and auto_or_number(" AUTO ", "lam") is None
    assert auto_or_number(0.03, "lam") == 0.03 and auto_or_number("1e-3", "lam") == 1e-3
    for bad in (-0.1, float("nan"), float("inf"), "often", True, None):
        with pytest.raises(InputError, match="lam"):
            auto_or_number(bad, "lam")


def test_signal_power_matches_image_power():
    """Parseval: calibration-block energy minus noise ~ mean |x|^2 (most energy is central)."""
    k0, _ = _noise_free()
    k0 = to_recon_grid(k0, (96, 96, 1))
    mask = cine_mask(96, 4, 24, k0.shape[0])
    full = float((np.abs(k0) ** 2).sum() / (k0.shape[0] * 96 * 96))
    power = signal_power(k0 * mask[:, None, :, None], mask, 0.0)
    assert 0.8 * full < power <= full * 1.0001
    noisy = signal_power(k0 * mask[:, None, :, None] + 0.0, mask, 1e-3)
    assert noisy < power


# ---------------------------------------------------------------------------
# the problem's noise level


def test_slice_problem_noise_sigma_field():
    k, mask, true = _cached_noisy(0.03)
    k = torch.from_numpy(to_recon_grid(k, (96, 96, 1)))
    maps = torch.ones(8, 96, 96, dtype=torch.complex64) / np.sqrt(8)
    p = SliceProblem(k, torch.from_numpy(mask), maps)  # three positional arguments still work
    assert p.noise_sigma is None
    assert noise_level(p) == pytest.approx(true, rel=0.15)
    q = SliceProblem(k, torch.from_numpy(mask), maps, noise_sigma=0.123)
    assert noise_level(q) == 0.123 and q.to("cpu").noise_sigma == 0.123
    for bad in (float("nan"), -1.0, float("inf")):
        with pytest.raises(InputError, match="noise_sigma"):
            SliceProblem(k, torch.from_numpy(mask), maps, noise_sigma=bad)


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory):
    from recon.simulate.cine import SimulationConfig, simulate_to_file

    out = {}
    for scan in (True, False):
        cfg = SimulationConfig(n_phases=4, n_coils=6, matrix=(64, 64), acceleration=4, snr=30.0, seed=4,
                               noise_scan=scan)
        path = tmp_path_factory.mktemp("noise") / f"scan{int(scan)}.h5"
        out[scan] = (path, simulate_to_file(cfg, path)["noise_sigma"])
    return out


def test_read_raw_attaches_noise_scan_sigma_and_prepare_uses_it(raw_files):
    from recon.io.raw import read_raw
    from recon.pipeline import prepare

    path, sim_sigma = raw_files[True]
    raw = read_raw(path)
    s = raw.slices[0]
    scan_sigma = s.extra[NOISE_SIGMA_KEY]
    assert scan_sigma == pytest.approx(sigma_from_noise_scan(raw.noise))
    assert 0.6 * sim_sigma < scan_sigma < 1.4 * sim_sigma  # per-coil variances lie in [0.7, 1.3] sigma^2
    p = prepare(s)
    assert p.noise_sigma == scan_sigma
    # the data agree with the noise scan
    assert estimate_sigma(p.kspace, p.mask) == pytest.approx(scan_sigma, rel=0.15)


def test_without_noise_scan_the_level_is_estimated_when_needed(raw_files):
    """prepare() leaves the noise level unknown (zero-filling and learned models do not
    need it); noise_level() estimates it from the data for the methods that do."""
    from recon.io.raw import read_raw
    from recon.pipeline import prepare
    from recon.problem import noise_level

    path, sim_sigma = raw_files[False]
    raw = read_raw(path)
    assert raw.noise is None and NOISE_SIGMA_KEY not in raw.slices[0].extra
    p = prepare(raw.slices[0])
    assert p.noise_sigma is None
    assert noise_level(p) == pytest.approx(estimate_sigma(p.kspace, p.mask))
    assert 0.6 * sim_sigma < noise_level(p) < 1.4 * sim_sigma


def test_chain_knows_the_noise_after_whitening(raw_files, monkeypatch):
    """The in-process chain whitens with the noise scan; its slices then carry whitened_sigma."""
    import gadgets.chain as chain
    from gadgets.bucket import arrays_to_acquisitions
    from recon.io.header import parse_header
    from recon.io.raw import read_acquisitions

    path, _ = raw_files[True]
    _, xml, headers, data = read_acquisitions(path)
    seen = []
    monkeypatch.setattr(chain, "slice_to_images",
                        lambda s, cfg, start_index=1: (seen.append(s.extra.get(NOISE_SIGMA_KEY)), ([], None))[1])
    session = chain.ChainSession(parse_header(xml, source=str(path)))
    for acq in arrays_to_acquisitions(headers, data):
        session.acquisition(acq)
    session.close()
    dwell = float(headers["sample_time_us"][-1])
    assert seen and all(v == pytest.approx(whitened_sigma(dwell, dwell)) for v in seen)


def test_unusable_noise_scan_is_left_out(raw_files):
    from recon.io.raw import attach_noise_sigma, read_acquisitions, read_raw

    path, _ = raw_files[True]
    s = read_raw(path).slices[0]
    s.extra.clear()
    _, _, headers, _ = read_acquisitions(path)
    bad = np.full((6, 100), np.nan, dtype=np.complex64)
    attach_noise_sigma([s], headers, bad)  # logged, not raised: the data estimate takes over
    assert NOISE_SIGMA_KEY not in s.extra


def test_a_noise_scan_the_data_contradict_is_kept_and_logged(raw_files, caplog):
    from recon.io.raw import read_raw
    from recon.pipeline import prepare
    from recon.problem import noise_level

    path, sim_sigma = raw_files[False]
    p = prepare(read_raw(path).slices[0])
    p.noise_sigma = 10 * sim_sigma
    with caplog.at_level("WARNING", logger="crunet.problem"):
        assert noise_level(p) == 10 * sim_sigma
    assert "noise scan gives" in caplog.text
    caplog.clear()
    p.noise_sigma = sim_sigma  # a scan the data agree with (checked by the quick estimate): no warning
    with caplog.at_level("WARNING", logger="crunet.problem"):
        assert noise_level(p) == sim_sigma
    assert "noise scan gives" not in caplog.text
