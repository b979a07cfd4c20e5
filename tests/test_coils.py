"""Coil sensitivity estimation: ESPIRiT, Walsh, coil compression, BART as reference.

Agreement numbers are printed (``pytest -s`` shows them): ``rel_rms`` is the
normalised RMS difference over the object support, up to a per-pixel common phase,
with the reference maps normalised to unit sum of squares (see
:func:`recon.coils.compare_maps`).
"""


import numpy as np
import pytest
import torch

from recon.coils import (
    average_acs,
    calibration_region,
    compare_maps,
    compress,
    compress_slice,
    compression_matrix,
    espirit_maps,
    estimate_maps,
    maps_from_acs,
    walsh_maps,
)
from recon.coils.bart_io import bart_ecalib, bart_executable, read_cfl, write_cfl
from recon.errors import InputError
from recon.fft import fft2c
from recon.io.raw import read_raw, read_reference
from recon.kspace import center_crop
from recon.masks import acs_indices
from recon.simulate.cine import SimulationConfig, simulate_scan, simulate_to_file
from tests.conftest import missing_tool


def _report(name, result):
    print(f"\n{name}: rel_rms {result['rel_rms']:.4f}, median {result['median']:.4f}, "
          f"p95 {result['p95']:.4f} over {result['pixels']} px")


def _require_bart():
    if bart_executable() is None:
        missing_tool("bart", "bart")


@pytest.fixture(scope="module")
def shepp_logan(shepp_logan_file):
    out = shepp_logan_file
    s = read_raw(out).slices[0]
    csm = read_reference(out, "csm", 0)
    phantom = np.abs(read_reference(out, "phantom", 0))
    support = phantom > 0.05 * phantom.max()
    return {"slice": s, "csm": csm, "support": support, "espirit": estimate_maps(s)}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim_coils") / "sim.h5"
    simulate_to_file(SimulationConfig(n_phases=4, n_coils=8, matrix=(96, 90), acceleration=4, snr=40), path)
    s = read_raw(path).slices[0]
    truth = np.abs(read_reference(path, "ground_truth", 0)).mean(0)
    return {"slice": s, "csm": read_reference(path, "csm", 0), "support": truth > 0.05 * truth.max()}


# -- (a) Shepp-Logan: independent truth -------------------------------------------------


def test_espirit_matches_shepp_logan_truth(shepp_logan):
    maps = shepp_logan["espirit"]
    assert maps.shape == (8, 128, 128) and maps.dtype == np.complex64
    res = compare_maps(maps, shepp_logan["csm"], shepp_logan["support"])
    _report("ESPIRiT vs Shepp-Logan true csm", res)
    assert res["rel_rms"] < 0.03
    # unit norm inside the support (nothing cropped there)
    norm = np.sqrt((np.abs(maps) ** 2).sum(0))[shepp_logan["support"]]
    np.testing.assert_allclose(norm, 1, atol=1e-4)


# -- (b) BART ecalib on the same calibration data ---------------------------------------


def test_espirit_matches_bart_ecalib(shepp_logan):
    _require_bart()
    s = shepp_logan["slice"]
    acs = calibration_region(s)
    kspace = np.zeros((s.n_coils, 128, 128), np.complex64)
    kspace[:, s.acs_lines] = acs
    bart = bart_ecalib(kspace)
    ours = shepp_logan["espirit"]
    sup = shepp_logan["support"]
    kept_b, kept_o = np.abs(bart["maps"]).sum(0) > 0, np.abs(ours).sum(0) > 0
    both = sup & kept_b & kept_o
    res = compare_maps(ours, bart["maps"], both)
    _report(f"ESPIRiT vs BART ({bart['command']})", res)
    _report("BART vs Shepp-Logan true csm", compare_maps(bart["maps"], shepp_logan["csm"], sup))
    print(f"crop masks differ at {(kept_b != kept_o).sum()} of {kept_b.size} px")
    assert res["rel_rms"] < 0.01
    assert (kept_b != kept_o).mean() < 0.005


def test_espirit_matches_bart_soft_crop_and_kernel(shepp_logan):
    _require_bart()
    s = shepp_logan["slice"]
    acs = calibration_region(s)
    kspace = np.zeros((s.n_coils, 128, 128), np.complex64)
    kspace[:, s.acs_lines] = acs
    opts = dict(kernel=(5, 5), calib_size=(20, 20), threshold=0.002, crop=0.9, soft_crop=True)
    bart = bart_ecalib(kspace, **opts)
    ours, ev = espirit_maps(acs, (128, 128), return_eigenvalues=True, **opts)
    np.testing.assert_allclose(ev, bart["eigenvalues"], atol=0.02)
    res = compare_maps(ours, bart["maps"], shepp_logan["support"])
    _report("ESPIRiT vs BART, -k 5 -r 20 -t 0.002 -c 0.9 -S", res)
    # soft crop: compare magnitudes of the weights too
    np.testing.assert_allclose(np.sqrt((np.abs(ours) ** 2).sum(0)),
                               np.sqrt((np.abs(bart["maps"]) ** 2).sum(0)), atol=0.02)
    assert res["rel_rms"] < 0.01


# -- (c) our simulator --------------------------------------------------------------------


def test_espirit_matches_simulator_truth(simulated):
    s = simulated["slice"]
    maps = estimate_maps(s)
    assert maps.shape == (8, 96, 90)
    res = compare_maps(maps, simulated["csm"], simulated["support"])
    _report("ESPIRiT vs simulator true csm", res)
    assert res["rel_rms"] < 0.1


# -- (d) Walsh and compression ----------------------------------------------------------


def test_walsh_agrees_with_espirit(shepp_logan, simulated):
    walsh = estimate_maps(shepp_logan["slice"], "walsh")
    res = compare_maps(walsh, shepp_logan["espirit"], shepp_logan["support"])
    _report("Walsh vs ESPIRiT (Shepp-Logan)", res)
    _report("Walsh vs Shepp-Logan true csm", compare_maps(walsh, shepp_logan["csm"], shepp_logan["support"]))
    assert res["rel_rms"] < 0.05
    s = simulated["slice"]
    res = compare_maps(estimate_maps(s, "walsh"), estimate_maps(s), simulated["support"])
    _report("Walsh vs ESPIRiT (simulator)", res)
    assert res["rel_rms"] < 0.2


def test_compression_keeps_energy_with_fewer_coils():
    cfg = SimulationConfig(n_phases=2, n_coils=16, matrix=(48, 40), acceleration=4, noise_scan=False)
    kspace = simulate_scan(cfg).slices[0].kspace  # [t, c, ky, kx], fully sampled
    lines = acs_indices(48, 24)
    acs = kspace[:, :, lines].mean(0)
    matrix, kept = compression_matrix(acs, energy=0.99, coil_axis=0)
    v = matrix.shape[0]
    print(f"\ncompression: 16 -> {v} virtual coils keep {kept:.4f} of the ACS energy")
    assert v < 16 and kept >= 0.99
    np.testing.assert_allclose(matrix @ matrix.conj().T, np.eye(v), atol=1e-5)
    small = compress(kspace, matrix, coil_axis=1)
    assert small.shape == (2, v) + kspace.shape[2:] and small.dtype == np.complex64
    energy = (np.abs(small) ** 2).sum() / (np.abs(kspace) ** 2).sum()
    print(f"... and {energy:.4f} of the whole k-space energy")
    assert energy > 0.95  # the whole k-space (noise included), not only the ACS
    # all coils kept: lossless round trip, numpy and torch alike
    full, kept_all = compression_matrix(acs, n_virtual=16, coil_axis=0)
    assert kept_all == pytest.approx(1.0)
    back = compress(compress(acs, full, coil_axis=0), full.conj().T, coil_axis=0)
    np.testing.assert_allclose(back, acs, atol=1e-4 * np.abs(acs).max())
    t = compress(torch.from_numpy(kspace), torch.from_numpy(matrix), coil_axis=1)
    assert torch.is_tensor(t)
    np.testing.assert_allclose(t.numpy(), small, atol=1e-5 * np.abs(small).max())


def test_compress_slice(simulated):
    s = simulated["slice"]
    new, m2, _ = compress_slice(s, n_virtual=4)
    assert new.kspace.shape[1] == 4 and new.acs.shape[1] == 4 and m2.shape == (4, s.n_coils)
    maps = estimate_maps(new)
    assert maps.shape == (4, 96, 90)


# -- (e) sizes, grids, bad input -------------------------------------------------------


def _synthetic(ny, nx, n_coils=6):
    """Smooth object and analytic maps on an odd/even grid; returns k-space and true maps."""
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    y, x = (y - ny // 2) / ny, (x - nx // 2) / nx
    obj = np.exp(-((y / 0.33) ** 2 + (x / 0.38) ** 2) ** 3) * (1 + 0.3 * np.cos(6 * x + 2 * y))
    ang = 2 * np.pi * np.arange(n_coils) / n_coils
    maps = np.stack([np.exp(-((y - 0.5 * np.sin(a)) ** 2 + (x - 0.5 * np.cos(a)) ** 2) / 0.3)
                     * np.exp(1j * (a + 2 * x * np.cos(a) - 1.5 * y)) for a in ang])
    maps = (maps / np.sqrt((np.abs(maps) ** 2).sum(0))).astype(np.complex64)
    return fft2c((maps * obj).astype(np.complex64)), maps, obj > 0.05


@pytest.mark.parametrize("ny, nx, n_lines", [(75, 61, 24), (64, 80, 23), (81, 81, 21)])
def test_odd_sizes_espirit_and_walsh(ny, nx, n_lines):
    kspace, truth, support = _synthetic(ny, nx)
    start = ny // 2 - n_lines // 2
    lines = np.arange(start, start + n_lines)
    for method, bound in (("espirit", 0.03), ("walsh", 0.06)):
        maps = maps_from_acs(kspace[:, lines], lines, ny, method=method)
        assert maps.shape == (6, ny, nx)
        res = compare_maps(maps, truth, support)
        print(f"\n{method} {ny}x{nx}, {n_lines} lines: rel_rms {res['rel_rms']:.4f}")
        assert res["rel_rms"] < bound


def test_exact_and_coarse_eigen_agree():
    kspace, truth, support = _synthetic(96, 100)
    calib = kspace[:, 48 - 12:48 + 12, 50 - 12:50 + 12]
    exact = espirit_maps(calib, (96, 100), coarse=1, soft_crop=False)  # the eigenvectors themselves
    fast = espirit_maps(calib, (96, 100), coarse=4, soft_crop=False)
    assert compare_maps(fast, exact, support)["rel_rms"] < 2e-3
    # the default soft crop weights by an S-curve of the (interpolated) eigenvalue: a little more spread
    soft = compare_maps(espirit_maps(calib, (96, 100), coarse=4), espirit_maps(calib, (96, 100), coarse=1), support)
    assert soft["rel_rms"] < 5e-3
    t = espirit_maps(torch.from_numpy(np.ascontiguousarray(calib)), (96, 100))
    assert torch.is_tensor(t) and t.dtype == torch.complex64


def test_phase_oversampled_grid_is_a_crop():
    kspace, _, _ = _synthetic(96, 64)
    lines = np.arange(36, 60)
    full = maps_from_acs(kspace[:, lines], lines, 96)
    cropped = maps_from_acs(kspace[:, lines], lines, 96, shape=(80, 64))
    np.testing.assert_allclose(cropped, center_crop(full, (80, 64)), atol=1e-5)
    finer = maps_from_acs(kspace[:, lines], lines, 96, shape=(120, 64))
    assert finer.shape == (6, 120, 64)


def test_average_acs_uses_only_frames_holding_a_line(rng):
    acs = (rng.standard_normal((3, 2, 4, 8)) + 1j * rng.standard_normal((3, 2, 4, 8))).astype(np.complex64)
    mask = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 0]], bool)
    acs = np.where(mask[:, None, :, None], acs, 0).astype(np.complex64)
    avg = average_acs(acs, mask)
    np.testing.assert_allclose(avg[:, 0], acs[:, :, 0].mean(0), rtol=1e-5)
    np.testing.assert_allclose(avg[:, 1], (acs[0, :, 1] + acs[2, :, 1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(avg[:, 2], acs[2, :, 2], rtol=1e-5)
    with pytest.raises(InputError, match="held by no frame"):
        average_acs(acs, np.zeros((3, 4), bool))


def test_bad_inputs_raise_input_error():
    kspace, _, _ = _synthetic(64, 64)
    lines = np.arange(20, 44)
    acs = kspace[:, lines]
    with pytest.raises(InputError, match="unknown coil-map method"):
        maps_from_acs(acs, lines, 64, method="sense")
    with pytest.raises(InputError, match="ESPIRiT options: unknown key"):
        maps_from_acs(acs, lines, 64, kernal=5)
    with pytest.raises(InputError, match="Walsh options: unknown key"):
        maps_from_acs(acs, lines, 64, method="walsh", kernel=5)
    with pytest.raises(InputError, match="crop"):
        maps_from_acs(acs, lines, 64, crop=1.5)
    with pytest.raises(InputError, match="kernel"):
        maps_from_acs(acs, lines, 64, kernel=(0, 6))
    with pytest.raises(InputError, match="larger than the calibration region"):
        maps_from_acs(acs[:, :4], lines[:4], 64)
    with pytest.raises(InputError, match="line indices"):
        maps_from_acs(acs, lines[:-1], 64)
    with pytest.raises(InputError, match="ascending"):
        maps_from_acs(acs, lines[::-1], 64)
    with pytest.raises(InputError, match="remove"):
        maps_from_acs(acs, lines, 64, shape=(64, 128))
    with pytest.raises(InputError, match="all zero"):
        maps_from_acs(np.zeros_like(acs), lines, 64)
    bad = acs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        maps_from_acs(bad, lines, 64)
    with pytest.raises(InputError, match="coils"):
        espirit_maps(acs[0], (64, 64))
    with pytest.raises(InputError):
        walsh_maps(np.zeros((2, 8, 8), np.complex64))
    with pytest.raises(InputError, match="exactly one"):
        compression_matrix(acs, coil_axis=0)
    with pytest.raises(InputError, match="exactly one"):
        compression_matrix(acs, n_virtual=2, energy=0.9, coil_axis=0)
    with pytest.raises(InputError, match="energy"):
        compression_matrix(acs, energy=1.5, coil_axis=0)
    with pytest.raises(InputError, match="n_virtual"):
        compression_matrix(acs, n_virtual=7, coil_axis=0)
    with pytest.raises(InputError, match="coils"):
        compress(acs, np.eye(4, 5, dtype=np.complex64), coil_axis=0)


def test_cfl_round_trip(tmp_path, rng):
    a = (rng.standard_normal((5, 4, 1, 3)) + 1j * rng.standard_normal((5, 4, 1, 3))).astype(np.complex64)
    write_cfl(tmp_path / "a", a)
    assert (tmp_path / "a.hdr").read_text().splitlines()[1].split() == ["5", "4", "1", "3"]
    np.testing.assert_array_equal(read_cfl(tmp_path / "a", ndim=4), a)
    # column-major on disk: the first index varies fastest
    raw = np.fromfile(tmp_path / "a.cfl", dtype=np.complex64)
    assert raw[1] == a[1, 0, 0, 0]
    with pytest.raises(InputError):
        read_cfl(tmp_path / "missing")


def test_bench_reports_timings_and_agreement(tmp_path):
    import json

    from crunet.bench.coils import bench_coil_maps, write_bench

    res = bench_coil_maps(shape=(48, 40), n_coils=4, repeats=1)
    assert res["ours"]["seconds"] > 0
    assert res["merged"]["seconds"] > 0 and res["merged"]["ratio_to_first_set"] > 0
    assert 0 <= res["merged"]["pixels_merged"] <= 1
    if bart_executable() is None:
        assert res["bart"] == "not installed"
    else:
        assert res["bart"]["seconds"] > 0 and res["ratio"] > 0
        assert res["agreement"]["median"] < 0.01  # BART's 30 orthogonal iterations leave outliers
        assert res["truth"]["ours"]["rel_rms"] < 0.1
    path = write_bench(res, tmp_path / "b.json")
    assert json.loads(path.read_text())["shape"] == [48, 40]


def test_bart_pics_layout_round_trip():
    """bart pics on fully sampled k-space gives back the cine in our orientation ([t, y, x], frame order
    kept): the layout the benchmark's CS reference relies on. Odd sizes are refused (BART centres them
    differently)."""
    from recon.coils.bart_io import bart_pics

    if bart_executable() is None:
        missing_tool("bart", "bart")
    g = np.random.default_rng(3)
    t, c, ny, nx = 3, 2, 16, 12
    x = (g.standard_normal((t, ny, nx)) + 1j * g.standard_normal((t, ny, nx))).astype(np.complex64)
    maps = (g.standard_normal((c, ny, nx)) + 1j * g.standard_normal((c, ny, nx))).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    k = fft2c(torch.as_tensor(maps[None] * x[:, None])).numpy()
    r = bart_pics(k, maps, regularisation="T:1024:0:0.00001", iterations=30)
    rec = r["frames"]
    assert rec.shape == (t, ny, nx) and r["seconds"] > 0
    scale = np.vdot(rec, x) / np.vdot(rec, rec)  # BART may rescale; orientation and order must match
    assert np.linalg.norm(scale * rec - x) / np.linalg.norm(x) < 0.02
    with pytest.raises(InputError, match="odd side"):
        bart_pics(k[:, :, :15], maps[:, :15])


def test_virtual_coils_in_the_pipeline(tmp_path):
    """ReconConfig.virtual_coils compresses before the maps and the method: on 16 coils at
    R = 4, 12 virtual ones reconstruct almost the same image (within 0.2 dB of all coils'
    PSNR; measured: SENSE 41.02 -> 41.00 dB, 10: 40.49, 8: 40.14, 6: 36.98); 0 or >= the coil
    count changes nothing; the ImageComment says so; the gadget setting reaches the config."""
    from gadgets.settings import GadgetSettings
    from recon.metrics import psnr
    from recon.pipeline import ReconConfig, reconstruct_slice

    path = tmp_path / "c16.h5"
    simulate_to_file(SimulationConfig(n_slices=1, n_phases=6, n_coils=16, matrix=(64, 64), acceleration=4,
                                      snr=80.0, seed=4), path)
    s = read_raw(path).slices[0]
    ref = read_reference(path, "ground_truth", 0)
    for method in ("zf", "sense"):
        full = reconstruct_slice(s, ReconConfig(method=method, device="cpu"))
        virt = reconstruct_slice(s, ReconConfig(method=method, device="cpu", virtual_coils=12))
        same = reconstruct_slice(s, ReconConfig(method=method, device="cpu", virtual_coils=16))
        assert full.maps.shape[0] == 16 and virt.maps.shape[0] == 12
        np.testing.assert_array_equal(same.frames, full.frames)
        p_full, p_virt = np.mean(psnr(ref, full.frames)), np.mean(psnr(ref, virt.frames))
        assert abs(p_full - p_virt) < 0.2, (method, p_full, p_virt)
    assert ReconConfig(method="zf", virtual_coils=8).comment().endswith("espirit maps, 8 virtual coils")
    with pytest.raises(InputError, match="virtual_coils"):
        ReconConfig(method="zf", virtual_coils=-1).validate()
    settings = GadgetSettings.from_xml('<configuration><property name="method" value="zf"/>'
                                       '<property name="virtual_coils" value="8"/></configuration>')
    assert settings.recon_config().virtual_coils == 8


def test_bart_sensitivities_layout_and_limits():
    """``bart phantom -S``: [c, size, size] in our layout (its rows BART's second dimension);
    more coils than BART simulates is a clear error before BART runs."""
    from recon.coils.bart_io import bart_sensitivities

    with pytest.raises(InputError, match="1 to 8 coils"):
        bart_sensitivities(9, 32)
    _require_bart()
    s = bart_sensitivities(3, 32)
    assert s.shape == (3, 32, 32) and s.dtype == np.complex64
    assert np.isfinite(s).all() and np.abs(s).max() > 0
    assert not np.allclose(np.abs(s[0]), np.abs(s[0]).T, rtol=0.05)  # not symmetric: the layout matters


def test_bart_phantom_outline_in_our_layout():
    """The outline the ``bart`` coil family maps the body onto (recon.simulate.coils._BART_BODY)
    is that of BART's phantom in our [y, x] layout, on the sensitivities' grid."""
    import subprocess
    import tempfile

    from recon.coils.bart_io import bart_to_images
    from recon.simulate.coils import _BART_BODY, _BART_GRID

    _require_bart()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bart", "phantom", "-x", str(_BART_GRID), f"{tmp}/p"], check=True, capture_output=True)
        img = np.abs(bart_to_images(read_cfl(f"{tmp}/p", ndim=2)[:, :, None, None])[0])
    half = _BART_GRID / 2
    for axis, semi in zip((0, 1), _BART_BODY):
        inside = np.flatnonzero(img.max(axis=1 - axis) > 0)
        assert (inside[-1] - inside[0] + 1) / 2 / half == pytest.approx(semi, abs=0.02)
