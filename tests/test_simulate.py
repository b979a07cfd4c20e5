"""crunet simulate: multi-coil cine raw data that round-trips through the reader exactly."""

import numpy as np
import pytest

from recon.errors import InputError
from recon.fft import fft2c
from recon.io import flags as F
from recon.io.raw import read_raw, read_reference, write_raw
from recon.io.header import build_cine_header
from recon.kspace import to_recon_grid
from recon.masks import acs_indices
from recon.simulate.cine import SimulationConfig, resample_cycle, simulate_scan, simulate_to_file
from recon.simulate.realdata import default_data_dir

SMALL = SimulationConfig(n_slices=2, n_phases=4, n_coils=4, matrix=(48, 40), acceleration=4, n_acs=12,
                         snr=30.0, noise_samples=512, seed=3)


@pytest.fixture(scope="module")
def scan():
    return simulate_scan(SMALL)


@pytest.fixture(scope="module")
def written(tmp_path_factory, scan):
    path = tmp_path_factory.mktemp("sim") / "raw.h5"
    headers, data = scan.acquisitions()
    write_raw(path, build_cine_header(SMALL.protocol()), headers, data, references={
        "ground_truth": [s.reference for s in scan.slices], "csm": [s.csm for s in scan.slices]})
    return path, headers


def test_roundtrip_exact(scan, written):
    path, headers = written
    raw = read_raw(path)
    assert len(raw.slices) == 2
    np.testing.assert_array_equal(raw.noise, scan.noise.astype(np.complex64)[:, :raw.noise.shape[1]])
    n_noise = int(F.is_noise(headers["flags"]).sum())
    for z, (s, sim) in enumerate(zip(raw.slices, scan.slices)):
        np.testing.assert_array_equal(s.mask, sim.mask)
        np.testing.assert_array_equal(s.kspace, sim.kspace * sim.mask[:, None, :, None])
        np.testing.assert_array_equal(s.acs_lines, acs_indices(48, 12))
        np.testing.assert_array_equal(s.acs, sim.kspace[:, :, s.acs_lines])
        assert s.geometry == sim.geometry
        assert s.slice_index == z
        np.testing.assert_array_equal(read_reference(path, "ground_truth", z), sim.reference)
        np.testing.assert_allclose(np.abs(sim.reference),
                                   np.sqrt((np.abs(sim.csm[None] * sim.image[:, None]) ** 2).sum(1)), rtol=1e-5)
        np.testing.assert_array_equal(read_reference(path, "csm", z), sim.csm)
    np.testing.assert_array_equal(np.concatenate([s.acq_headers for s in raw.slices]), headers[n_noise:])
    assert F.has(headers["flags"][-1], F.LAST_IN_MEASUREMENT)
    assert F.has(headers["flags"], F.LAST_IN_MEASUREMENT).sum() == 1


def test_header_describes_the_protocol(written):
    raw = read_raw(written[0])
    e = raw.encoding
    assert e.encoded_matrix == (80, 48, 1) and e.recon_matrix == (40, 48, 1)
    assert e.acceleration == (4, 1) and e.receiver_channels == 4
    assert (e.ky.center, e.phase.maximum, e.slice.maximum) == (24, 3, 1)
    assert raw.slices[0].acceleration == 4


def test_physics_consistent(scan):
    """k-space = F(csm * image) plus noise of std sigma on the acquired lines (and none on
    lines no frame acquires: they are never written)."""
    s = scan.slices[0]
    k = to_recon_grid(s.kspace, (40, 48, 1))
    resid = k - fft2c(s.csm[None] * s.image[:, None])
    rows = s.mask.any(axis=0)
    # residual is the added noise: its std matches sigma (x correlation scaling ~1)
    assert 0.7 < resid[:, :, rows].std() / scan.sigma < 1.4
    assert np.abs(resid[:, :, ~rows]).max() < 1e-4 * np.abs(k).max()
    assert np.abs(s.image).max() == pytest.approx(1.0, rel=1e-3)
    assert np.abs(s.csm).max() <= 1.0 + 1e-6
    # SNR as configured: mean magnitude of the coil-combined reference over the object / sigma
    mag = np.abs(s.reference)
    assert mag[mag > 0.1 * mag.max()].mean() / scan.sigma == pytest.approx(30.0, rel=1e-6)


def test_deterministic_and_seeded():
    a = simulate_scan(SMALL)
    b = simulate_scan(SMALL)
    np.testing.assert_array_equal(a.slices[1].kspace, b.slices[1].kspace)
    c = simulate_scan(SimulationConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(a.slices[1].kspace, c.slices[1].kspace)


def test_shifted_mask_and_lax(tmp_path):
    cfg = SimulationConfig(n_slices=1, n_phases=4, n_coils=3, matrix=(40, 40), acceleration=4, n_acs=8,
                           shifted_mask=True, view="lax", noise_scan=False)
    simulate_to_file(cfg, tmp_path / "r.h5")
    raw = read_raw(tmp_path / "r.h5")
    s = raw.slices[0]
    assert raw.noise is None and raw.encoding.calibration_mode == "interleaved"
    assert not (s.mask == s.mask[0]).all() and s.mask.any(axis=0).all()


def test_real_series_source(tmp_path):
    data = default_data_dir()
    if data is None:
        # synthesise a series in the Sunnybrook layout (slices, phases, H, W)
        src = tmp_path / "series.npz"
        yy, xx = np.mgrid[:64, :64]
        frames = [((yy - 32) ** 2 + (xx - 32) ** 2 < (10 + 3 * np.cos(2 * np.pi * t / 20)) ** 2) * 1000
                  for t in range(20)]
        np.savez(src, cine=np.stack([np.stack(frames)] * 3).astype(np.int16))
    else:
        src = data / "sunnybrook_SCD0000101_sax_cine.npz"
    cfg = SimulationConfig(n_slices=2, n_phases=6, n_coils=3, matrix=(64, 48), n_acs=12, source=str(src),
                           acceleration=4, noise_scan=False)
    scan = simulate_scan(cfg)
    img = np.abs(scan.slices[0].image)
    assert img.shape == (6, 64, 48) and img.max() > 0
    assert not np.allclose(img[0], img[3]), "the heart moves"


def test_resample_cycle():
    frames = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2))
    out = resample_cycle(frames, 8)
    np.testing.assert_allclose(out[:, 0, 0], [0, 0.5, 1, 1.5, 2, 2.5, 3, 1.5])


@pytest.mark.parametrize("kwargs,match", [
    (dict(view="coronal"), "view"), (dict(n_phases=0), "n_phases"), (dict(matrix=(8, 8)), "too small"),
    (dict(snr=0), "snr"), (dict(source="/nonexistent.npz"), "image source"), (dict(n_acs=500), "n_acs"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(InputError, match=match):
        SimulationConfig(**kwargs).validate()


def test_time_averaged_calibration_acquires_the_lattice_only_and_calibrates_from_the_frames():
    """calibration 'average' (interleaved, TSENSE / TGRAPPA style): each frame samples the
    shifted lattice only, the central lines it holds are flagged as calibration, and the
    reader's ACS block is their time average, from which ESPIRiT finds the same coil maps
    as from a per-frame block."""
    from dataclasses import replace

    from recon.coils import estimate_maps
    from recon.simulate.acquisition import Acquisition
    from recon.simulate.cine import simulate_slice, to_slice_data
    from recon.simulate.phantom import cine_phantom

    acq = Acquisition(matrix=(48, 40), fov_mm=(300.0, 250.0), frames=8, n_coils=6, snr=200.0, acceleration=4,
                      n_acs=12, shifted_mask=True, calibration="average").validate()
    mask = acq.mask()
    assert (mask.sum(axis=1) == 12).all() and mask.any(axis=0).all()  # the lattice only; together every line
    assert not mask[:, acs_indices(48, 12)].all(axis=0).any()  # no line of the block in every frame
    rng = np.random.default_rng(0)
    sim = simulate_slice(cine_phantom(8, (48, 40), "sax", rng), acq, rng, noise_everywhere=True)
    averaged = to_slice_data(replace(sim, mask=mask), acq)
    np.testing.assert_array_equal(averaged.acs_lines, acs_indices(48, 12))
    assert not averaged.acs_mask.all() and averaged.acs_mask.any(axis=0).all()
    per_frame = replace(acq, calibration="frame")
    framed = to_slice_data(replace(sim, mask=per_frame.mask()), per_frame)
    assert framed.acs_mask.all()
    a, b = estimate_maps(averaged), estimate_maps(framed)
    support = np.sqrt((np.abs(b) ** 2).sum(axis=0)) > 0.5
    agreement = np.abs((np.conj(a) * b).sum(axis=0))[support]  # 1 where the maps agree up to a phase
    assert np.median(agreement) > 0.95
    for bad in (dict(shifted_mask=False), dict(frames=3)):
        with pytest.raises(InputError, match="calibration 'average'"):
            replace(acq, **bad).validate()
    with pytest.raises(InputError, match="calibration must be"):
        replace(acq, calibration="separate").validate()


def test_acquisition_spaces_draw_time_averaged_calibration_only_where_it_can_be():
    from recon.simulate.acquisition import TRAIN_SPACE

    rng = np.random.default_rng(1)
    drawn = [TRAIN_SPACE.draw(rng) for _ in range(200)]
    varied = [TRAIN_SPACE.vary_mask(a, rng) for a in drawn]
    for acq in drawn + varied:
        if acq.calibration == "average":
            assert acq.shifted_mask and acq.frames >= acq.acceleration
    assert sum(a.calibration == "average" for a in drawn) > 5 and sum(a.calibration == "average" for a in varied) > 5
    assert any(a.calibration == "frame" and a.shifted_mask for a in drawn)


def test_a_simulated_scan_file_with_time_averaged_calibration_reads_back(tmp_path):
    cfg = SimulationConfig(n_slices=1, n_phases=4, n_coils=4, matrix=(32, 24), n_acs=8, acceleration=4,
                           shifted_mask=True, calibration="average", noise_scan=False)
    simulate_to_file(cfg, tmp_path / "raw.h5")
    (s,) = read_raw(tmp_path / "raw.h5").slices
    assert (s.mask.sum(axis=1) == 8).all() and s.mask.any(axis=0).all()  # 32 / 4 lines per frame, all together
    np.testing.assert_array_equal(s.acs_lines, acs_indices(32, 8))
    assert (s.acs_mask.sum(axis=0) == 1).all()  # each calibration line in exactly one frame
    with pytest.raises(InputError, match="calibration 'average'"):
        SimulationConfig(n_phases=3, acceleration=4, shifted_mask=True, calibration="average").validate()
