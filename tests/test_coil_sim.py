"""Simulated receive coils: Biot-Savart sensitivities, noise covariance, correlated noise."""

from __future__ import annotations

import numpy as np
import pytest

from recon.errors import InputError
from recon.simulate.coil_noise import correlated_noise, noise_covariance
from recon.coils.bart_io import bart_executable
from recon.simulate.coils import COIL_FAMILIES, coil_sensitivities
from tests.conftest import missing_tool
from recon.simulate.phantom import cine_phantom, phantom_geometry


def _body(shape, fov=(320.0, 320.0), axes=None, shrink=0.95):
    ny, nx = shape
    axes = (0.33 * fov[0], 0.47 * fov[1]) if axes is None else axes
    y = (np.arange(ny) - ny // 2) * fov[0] / ny
    x = (np.arange(nx) - nx // 2) * fov[1] / nx
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return (yy / axes[0]) ** 2 + (xx / axes[1]) ** 2 < shrink**2


def _max_step(s: np.ndarray, region: np.ndarray) -> float:
    """Largest change between neighbouring pixels that both lie in region."""
    dy = np.abs(np.diff(s, axis=0))[region[1:] & region[:-1]]
    dx = np.abs(np.diff(s, axis=1))[region[:, 1:] & region[:, :-1]]
    return float(max(dy.max(), dx.max()))


# --------------------------------------------------------------------------- sensitivities


@pytest.mark.parametrize("n_coils", [1, 2, 5, 10])
@pytest.mark.parametrize("shape", [(33, 47), (40, 40)])
def test_maps_shape_dtype_scale(n_coils, shape):
    s = coil_sensitivities(n_coils, shape, rng=0)
    assert s.shape == (n_coils, *shape) and s.dtype == np.complex64
    assert np.all(np.isfinite(s))
    assert np.abs(s).max() == pytest.approx(1.0, abs=1e-6)


def test_maps_smooth_in_magnitude_and_phase():
    steps = {}
    for n in (64, 128):
        s = coil_sensitivities(8, (n, n), rng=3)
        body = _body((n, n))
        worst = max(_max_step(c, body) / np.abs(c[body]).max() for c in s)
        steps[n] = worst
        # the phase inside the body is smooth too (no wraps between neighbours far from the wires)
        inner = _body((n, n), shrink=0.7)
        for c in s:
            dphi = np.abs(np.angle(c[1:, :] * c[:-1, :].conj()))[inner[1:] & inner[:-1]]
            assert dphi.max() < 0.6 * 64 / n
    assert steps[128] < 0.2
    assert steps[128] < 0.65 * steps[64]  # halving the pixel roughly halves the step: smooth


def test_sum_of_squares_covers_body_and_coils_are_distinct():
    shape = (64, 64)
    s = coil_sensitivities(8, shape, rng=1)
    body = _body(shape)
    sos = np.sqrt((np.abs(s) ** 2).sum(axis=0))
    assert sos[body].min() > 0.05 * sos[body].max()
    a = s[:, body]
    sv = np.linalg.svd(a, compute_uv=False)
    assert sv[0] / sv[-1] < 30.0
    gram = np.abs(a @ a.conj().T)
    norm = np.sqrt(np.diag(gram))
    corr = gram / np.outer(norm, norm)
    off = corr[~np.eye(len(s), dtype=bool)]
    assert off.max() < 0.95
    assert np.median(off) < 0.5


@pytest.mark.parametrize("family", [f for f in COIL_FAMILIES if f != "bart"])  # BART's: its own test
def test_every_family_sees_the_whole_body_with_distinct_coils(family):
    shape = (64, 64)
    body = _body(shape)
    for seed in range(4):
        s = coil_sensitivities(8, shape, rng=seed, family=family)
        sos = np.sqrt((np.abs(s) ** 2).sum(axis=0))
        assert sos[body].min() > 0.01 * sos[body].max()
        a = s[:, body]
        gram = np.abs(a @ a.conj().T)
        norm = np.sqrt(np.diag(gram))
        assert np.median((gram / np.outer(norm, norm))[~np.eye(len(s), dtype=bool)]) < 0.5


def _coverage_centres(family: str, seeds: int = 8) -> np.ndarray:
    """Sum-of-squares-weighted centre (y, x) of the body's coverage for each seed."""
    shape = (64, 64)
    body = _body(shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = []
    for seed in range(seeds):
        w = (np.abs(coil_sensitivities(8, shape, rng=seed, family=family)) ** 2).sum(axis=0) * body
        out.append(((yy * w).sum() / w.sum(), (xx * w).sum() / w.sum()))
    return np.asarray(out)


def test_irregular_arrays_move_the_coverage_from_scan_to_scan():
    # regular layouts always cover the body about its centre; irregular ones (partial, uneven,
    # displaced arrays) move where the signal is strongest by several pixels
    assert _coverage_centres("irregular").std(axis=0).max() > 3 * _coverage_centres("ring").std(axis=0).max()


@pytest.mark.parametrize("family, expected", [
    ("wrap", (0.22741 + 0.05266j, 0.03278 - 0.03142j)),
    ("ring", (0.02980 - 0.02400j, -0.02148 - 0.07069j)),
    ("front_back", (0.30079 - 0.33824j, -0.05393 + 0.06363j)),
    ("dipole", (-0.00170 + 0.00379j, -0.00281 + 0.00496j)),
])
def test_families_draw_the_maps_they_always_drew(family, expected):
    # the shipped weights' training and validation data stay reproducible from their configs
    s = coil_sensitivities(6, (16, 16), rng=7, family=family)
    np.testing.assert_allclose(s[[0, 3], [2, 9], [5, 11]], expected, atol=2e-5)


def test_maps_follow_the_phantom_body():
    shape = (64, 80)
    geom = phantom_geometry("sax", 0)
    s = coil_sensitivities(12, shape, geom.fov_mm(shape), rng=0, body_axes_mm=geom.body_semi_axes_mm)
    body = cine_phantom(1, shape, "sax", rng=0)[0] > 0.1
    sos = np.sqrt((np.abs(s) ** 2).sum(axis=0))
    assert sos[body].min() > 0.05 * sos[body].max()
    # surface coils: the edge of the body sees more than its centre
    centre = sos[shape[0] // 2 - 2 : shape[0] // 2 + 3, shape[1] // 2 - 2 : shape[1] // 2 + 3].mean()
    assert np.percentile(sos[body], 95) > 2.0 * centre


def test_maps_deterministic_and_seed_dependent():
    a = coil_sensitivities(4, (31, 29), rng=5)
    b = coil_sensitivities(4, (31, 29), rng=5)
    c = coil_sensitivities(4, (31, 29), rng=6)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.01


def test_rings_and_body_arguments():
    one = coil_sensitivities(6, (32, 32), rng=0, n_rings=1)
    three = coil_sensitivities(6, (32, 32), rng=0, n_rings=3)
    assert one.shape == three.shape == (6, 32, 32)
    assert not np.allclose(np.abs(one), np.abs(three))
    small = coil_sensitivities(4, (32, 32), rng=0, body_axes_mm=(80.0, 100.0))
    assert small.shape == (4, 32, 32)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_coils=0),
        dict(n_coils=2.0),
        dict(shape=(0, 16)),
        dict(shape=(16,)),
        dict(fov_mm=(-1.0, 320.0)),
        dict(fov_mm=(np.nan, 320.0)),
        dict(n_coils=2, n_rings=3),
        dict(n_rings=0),
        dict(body_axes_mm=(0.0, 100.0)),
    ],
)
def test_maps_bad_arguments(kwargs):
    with pytest.raises(InputError):
        coil_sensitivities(**kwargs)


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("n_coils", [1, 4, 12])
def test_noise_covariance_hermitian_pd(n_coils):
    cov = noise_covariance(n_coils, rng=0, correlation=0.2)
    assert cov.shape == (n_coils, n_coils) and cov.dtype == np.complex64
    np.testing.assert_allclose(cov, cov.conj().T, atol=1e-7)
    assert np.linalg.eigvalsh(cov.astype(np.complex128)).min() > 0
    d = np.real(np.diag(cov))
    assert np.all((d >= 0.7 - 1e-6) & (d <= 1.3 + 1e-6))
    if n_coils > 1:
        rho = np.abs(cov) / np.sqrt(np.outer(d, d))
        neighbours = np.diag(rho, 1)
        assert 0.1 < neighbours.mean() < 0.3  # about the requested 0.2
        assert not np.allclose(d, d[0])  # per-coil variations


def test_noise_covariance_seeding_and_bad_args():
    np.testing.assert_array_equal(noise_covariance(6, rng=1), noise_covariance(6, rng=1))
    assert not np.array_equal(noise_covariance(6, rng=1), noise_covariance(6, rng=2))
    eye_like = noise_covariance(5, rng=0, correlation=0.0)
    np.testing.assert_allclose(eye_like, np.diag(np.diag(eye_like)), atol=1e-7)
    for bad in (dict(n_coils=0), dict(n_coils=3, correlation=1.0), dict(n_coils=3, correlation=-0.1)):
        with pytest.raises(InputError):
            noise_covariance(**bad)


def test_correlated_noise_matches_covariance():
    cov = noise_covariance(6, rng=0, correlation=0.4)
    noise = correlated_noise((50, 6, 16, 16), cov, rng=1)
    assert noise.shape == (50, 6, 16, 16) and noise.dtype == np.complex64
    samples = np.moveaxis(noise, 1, 0).reshape(6, -1)
    sample_cov = samples @ samples.conj().T / samples.shape[1]
    np.testing.assert_allclose(sample_cov, cov, atol=0.04)
    # circular: no correlation between real and imaginary parts, E[n n^T] = 0
    pseudo = samples @ samples.T / samples.shape[1]
    assert np.abs(pseudo).max() < 0.04


def test_correlated_noise_explicit_coil_axis():
    cov = noise_covariance(3, rng=2, correlation=0.5)
    noise = correlated_noise((3, 4000), cov, rng=0, coil_axis=0)
    sample_cov = noise @ noise.conj().T / noise.shape[1]
    np.testing.assert_allclose(sample_cov, cov, atol=0.06)
    last = correlated_noise((10, 20, 3), cov, rng=0, coil_axis=-1)
    assert last.shape == (10, 20, 3)
    np.testing.assert_array_equal(correlated_noise((2, 3, 4, 5), cov, rng=9), correlated_noise((2, 3, 4, 5), cov, rng=9))


def test_correlated_noise_bad_inputs():
    cov = noise_covariance(3, rng=0)
    with pytest.raises(InputError, match="does not match"):
        correlated_noise((2, 4, 8, 8), cov)
    with pytest.raises(InputError, match="out of range"):
        correlated_noise((3, 8), cov)  # default coil axis -3 does not exist
    with pytest.raises(InputError, match="square"):
        correlated_noise((3, 8, 8), np.ones((3, 2)))
    with pytest.raises(InputError, match="Hermitian"):
        correlated_noise((3, 8, 8), np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]))
    with pytest.raises(InputError, match="positive definite"):
        correlated_noise((3, 8, 8), np.ones((3, 3)))


def test_bart_family_is_limited_to_barts_coils():
    """The ``bart`` family (BART's simulated sensitivities) has at most 8 coils: a clear error
    before anything runs, in the maps, an acquisition and an acquisition space."""
    from dataclasses import replace

    from recon.simulate.acquisition import HELDOUT_SPACE, Acquisition

    with pytest.raises(InputError, match="at most 8 coils"):
        coil_sensitivities(9, (16, 16), rng=0, family="bart")
    with pytest.raises(InputError, match="at most 8 coils"):
        Acquisition(coil_family="bart", n_coils=10).validate()
    with pytest.raises(InputError, match="bart:8"):
        replace(HELDOUT_SPACE, coil_families=("bart",)).validate()  # the held-out counts 7 / 15 / 23


def test_bart_family_maps_follow_the_body():
    """BART's sensitivities stretched onto the body: smooth, covering it, and the same for a
    body twice as large at twice the field of view (the maps follow the body, not the grid)."""
    if bart_executable() is None:
        missing_tool("bart", "bart")
    a = coil_sensitivities(8, (48, 64), (240.0, 320.0), rng=1, family="bart", body_axes_mm=(80.0, 110.0))
    b = coil_sensitivities(8, (48, 64), (480.0, 640.0), rng=1, family="bart", body_axes_mm=(160.0, 220.0))
    assert a.shape == (8, 48, 64) and np.abs(a).max() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    body = _body((48, 64), (240.0, 320.0), axes=(80.0, 110.0))
    sos = np.sqrt((np.abs(a) ** 2).sum(axis=0))
    assert sos[body].min() > 0.2 * sos[body].max()
    assert _max_step(np.abs(a[0]), body) < 0.15
    # BART's eight elements overlap far more than our arrays' (median correlation over the body
    # 0.59 against < 0.5): less to unfold with, which SENSE feels at R = 4 already
    m = a[:, body]
    gram = np.abs(m @ m.conj().T)
    corr = gram / np.sqrt(np.outer(np.diag(gram), np.diag(gram)))
    assert 0.3 < np.median(corr[~np.eye(8, dtype=bool)]) < 0.9
