"""Image sources: the cine phantom, smooth background phase, real cine series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from recon.errors import InputError
from recon.simulate import realdata
from recon.simulate.phantom import (
    CineGeometry,
    cardiac_contraction,
    cine_phantom,
    heart_mask,
    phantom_geometry,
    smooth_phase,
)
from recon.simulate.realdata import default_data_dir, fit_to_matrix, list_series, load_cine_series

BLOOD_THRESHOLD = 0.55  # between myocardium (~0.3) and blood (~0.9) after normalisation


# --------------------------------------------------------------------------- helpers


def _lv_centre_px(geom: CineGeometry, shape: tuple[int, int]) -> tuple[float, float]:
    p = geom.pixel_mm(shape)
    return geom.heart_center_mm[0] / p + shape[0] // 2, geom.heart_center_mm[1] / p + shape[1] // 2


def _lv_blood_area(frame: np.ndarray, centre: tuple[float, float]) -> int:
    """Pixels of the bright connected component that holds the LV centre."""
    labels, _ = ndimage.label(frame > BLOOD_THRESHOLD)
    lab = labels[int(round(centre[0])), int(round(centre[1]))]
    assert lab > 0, "LV centre is not in the blood pool"
    return int((labels == lab).sum())


def _septum_mm(frame: np.ndarray, centre: tuple[float, float], geom: CineGeometry, shape) -> float:
    """Length of the dark run (myocardium) from the LV blood pool towards the RV blood pool."""
    p = geom.pixel_mm(shape)
    th = np.deg2rad(geom.heart_angle_deg)
    step = 0.05
    s = np.arange(0.0, 60.0 / p, step)
    prof = ndimage.map_coordinates(frame, [centre[0] + s * np.sin(th), centre[1] + s * np.cos(th)], order=1)
    dark = prof < BLOOD_THRESHOLD
    i0 = int(np.argmax(dark))
    i1 = i0 + int(np.argmax(~dark[i0:]))
    assert prof[i1] >= BLOOD_THRESHOLD, "no RV blood pool beyond the septum"
    return (i1 - i0) * step * p


# --------------------------------------------------------------------------- phantom


@pytest.mark.parametrize("view", ["sax", "lax"])
@pytest.mark.parametrize("shape", [(16, 16), (33, 47), (64, 40), (45, 45)])
def test_phantom_shape_dtype_range(view, shape):
    ph = cine_phantom(3, shape, view, rng=0)
    assert ph.shape == (3, *shape)
    assert ph.dtype == np.float32
    assert np.all(np.isfinite(ph))
    assert ph.min() >= 0.0 and ph.max() == pytest.approx(1.0)


def test_single_frame_is_end_diastole():
    one = cine_phantom(1, (48, 48), "sax", rng=3)
    many = cine_phantom(6, (48, 48), "sax", rng=3)
    assert one.shape == (1, 48, 48)
    # both are normalised to their own max; the ED frames agree up to that scale
    np.testing.assert_allclose(one[0] / one[0].max(), many[0] / many[0].max(), atol=1e-5)


def test_phantom_is_not_binary():
    ph = cine_phantom(1, (64, 64), "sax", rng=0)[0]
    assert len(np.unique(ph)) > 500  # texture and anti-aliased edges


def test_deterministic_for_equal_seeds_and_different_otherwise():
    a = cine_phantom(4, (40, 52), "sax", rng=7)
    b = cine_phantom(4, (40, 52), "sax", rng=7)
    c = cine_phantom(4, (40, 52), "sax", rng=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.05
    g = np.random.default_rng(5)
    d = cine_phantom(2, (32, 32), "lax", rng=g)
    e = cine_phantom(2, (32, 32), "lax", rng=g)  # generator state moved on
    assert not np.array_equal(d, e)


def test_texture_is_smooth_not_white_noise():
    geom = phantom_geometry("sax", 0)
    a = cine_phantom(1, (96, 96), "sax", rng=1, geometry=geom)[0]
    b = cine_phantom(1, (96, 96), "sax", rng=2, geometry=geom)[0]
    diff = a - b  # same anatomy, different texture
    assert diff.std() > 0.01
    diff = diff - diff.mean()
    lag1 = (diff[:, 1:] * diff[:, :-1]).sum() / (diff * diff).sum()
    assert lag1 > 0.4  # white noise would give ~0


def test_lax_differs_from_sax():
    sax = cine_phantom(4, (64, 64), "sax", rng=0)
    lax = cine_phantom(4, (64, 64), "lax", rng=0)
    assert np.abs(sax - lax).mean() > 0.02
    assert (heart_mask((64, 64), "sax", rng=0) != heart_mask((64, 64), "lax", rng=0)).sum() > 100


def test_contraction_curve_fast_ejection_slow_filling():
    c = cardiac_contraction(100, end_systole=0.33)
    assert c[0] == 0.0
    es = int(np.argmax(c))
    assert 30 <= es <= 36 and c[es] == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.diff(c[: es + 1]) >= 0) and np.all(np.diff(c[es:]) <= 1e-12)
    # ejection over ~1/3 of the cycle; filling to 90 % takes longer than ejection
    refill = es + int(np.argmax(c[es:] < 0.1))
    assert refill - es > es
    assert cardiac_contraction(1).tolist() == [0.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sax_ejection_fraction_and_timing(seed):
    shape, n = (96, 96), 16
    ph = cine_phantom(n, shape, "sax", rng=seed)
    geom = phantom_geometry("sax", seed)
    centre = _lv_centre_px(geom, shape)
    areas = np.array([_lv_blood_area(f, centre) for f in ph], dtype=float)
    ef = 1.0 - areas.min() / areas[0]
    assert 0.4 <= ef <= 0.75
    es = int(np.argmin(areas))
    assert 0.25 <= es / n <= 0.42  # end-systole at about a third of the cycle
    assert areas[0] >= areas.max() - 2  # frame 0 is end-diastole


@pytest.mark.parametrize("seed", [0, 4])
def test_sax_wall_thickens_in_systole(seed):
    shape, n = (128, 128), 12
    ph = cine_phantom(n, shape, "sax", rng=seed)
    geom = phantom_geometry("sax", seed)
    centre = _lv_centre_px(geom, shape)
    es = int(np.argmax(cardiac_contraction(n, geom.end_systole)))
    ed_mm = _septum_mm(ph[0], centre, geom, shape)
    es_mm = _septum_mm(ph[es], centre, geom, shape)
    assert ed_mm == pytest.approx(geom.wall_mm, abs=2.0)
    assert es_mm > 1.2 * ed_mm  # systolic wall thickening
    assert es_mm < 2.0 * ed_mm


@pytest.mark.parametrize("view", ["sax", "lax"])
def test_motion_only_inside_heart_mask(view):
    shape = (72, 88)
    ph = cine_phantom(10, shape, view, rng=11)
    mask = heart_mask(shape, view, rng=11)
    assert mask.dtype == bool and mask.shape == shape
    std = ph.std(axis=0)
    assert std[~mask].max() < 1e-5  # static tissue is exactly static
    assert std[mask].max() > 0.1  # the heart beats
    assert 0.02 < mask.mean() < 0.3


def test_lax_valve_plane_moves_apex_stays():
    shape, n = (128, 128), 12
    geom = phantom_geometry("lax", 0)
    ph = cine_phantom(n, shape, "lax", rng=0, geometry=geom)
    es = int(np.argmax(cardiac_contraction(n, geom.end_systole)))
    p = geom.pixel_mm(shape)
    t = np.deg2rad(geom.heart_angle_deg)
    eu = np.array([-np.cos(t), np.sin(t)])  # base -> apex, (y, x)
    ev = np.array([np.sin(t), np.cos(t)])
    crux = np.array(geom.heart_center_mm)
    line_mm = crux[None] + (0.5 * geom.wall_mm + geom.lv_radius_mm) * ev + np.arange(-40, 110, 0.25)[:, None] * eu
    coords = (line_mm / p + np.array(shape)[None] // 2).T

    def apical_end(frame):
        """Distance (mm) along the axis at which the LV cavity ends towards the apex."""
        prof = ndimage.map_coordinates(frame, coords, order=1) > BLOOD_THRESHOLD
        start = int((40.0 + 0.5 * geom.lv_length_mm) / 0.25)  # mid-cavity
        assert prof[start]
        return (start + int(np.argmax(~prof[start:]))) * 0.25 - 40.0

    apex_ed, apex_es = apical_end(ph[0]), apical_end(ph[es])
    assert apex_ed == pytest.approx(geom.lv_length_mm, abs=3.0)
    assert abs(apex_ed - apex_es) < 6.0  # the apex hardly moves
    # the cavity shrinks: fewer bright pixels on the apex side of the ES valve plane
    yy, xx = np.meshgrid(*(np.arange(s) - s // 2 for s in shape), indexing="ij")
    u = (yy * p - crux[0]) * eu[0] + (xx * p - crux[1]) * eu[1]
    v = (yy * p - crux[0]) * ev[0] + (xx * p - crux[1]) * ev[1]
    lv_side = (u > geom.valve_descent_mm + 3.0) & (v > 0.0) & heart_mask(shape, "lax", geometry=geom)
    ed_area = (ph[0][lv_side] > BLOOD_THRESHOLD).sum()
    es_area = (ph[es][lv_side] > BLOOD_THRESHOLD).sum()
    assert 0.3 < 1 - es_area / ed_area < 0.8


@pytest.mark.parametrize("seed", [0, 1])
def test_lax_valve_plane_moves_towards_apex(seed):
    shape, n = (192, 192), 12
    geom = phantom_geometry("lax", seed)
    ph = cine_phantom(n, shape, "lax", rng=seed, geometry=geom)
    es = int(np.argmax(cardiac_contraction(n, geom.end_systole)))
    p = geom.pixel_mm(shape)
    t = np.deg2rad(geom.heart_angle_deg)
    eu = np.array([-np.cos(t), np.sin(t)])
    ev = np.array([np.sin(t), np.cos(t)])
    us = np.arange(-10.0, 30.0, 0.25)
    # a line along the long axis through the mitral valve: the closed leaflets are a dark dip
    line_mm = np.array(geom.heart_center_mm)[None] + (0.5 * geom.wall_mm + 1.3 * geom.lv_radius_mm) * ev
    coords = ((line_mm + us[:, None] * eu) / p + np.array(shape)[None] // 2).T
    ed, es_pos = (us[np.argmin(ndimage.map_coordinates(ph[k], coords, order=1))] for k in (0, es))
    assert abs(ed) < 2.0
    assert es_pos - ed == pytest.approx(geom.valve_descent_mm, abs=4.0)


def test_heart_mask_matches_geometry_argument():
    geom = phantom_geometry("sax", 9)
    assert np.array_equal(heart_mask((50, 60), "sax", rng=9), heart_mask((50, 60), "sax", geometry=geom))
    centre = _lv_centre_px(geom, (50, 60))
    assert heart_mask((50, 60), "sax", geometry=geom)[int(round(centre[0])), int(round(centre[1]))]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_phases=0),
        dict(n_phases=-2),
        dict(n_phases=2.5),
        dict(shape=(15, 64)),
        dict(shape=(64,)),
        dict(shape=(64, 64, 2)),
        dict(view="coronal"),
        dict(view="lax", geometry=CineGeometry(view="sax")),
    ],
)
def test_phantom_bad_arguments(kwargs):
    with pytest.raises(InputError):
        cine_phantom(**kwargs)


def test_heart_mask_and_curve_bad_arguments():
    with pytest.raises(InputError):
        heart_mask((64, 64), view="2ch")
    with pytest.raises(InputError):
        heart_mask((8, 64))
    with pytest.raises(InputError):
        heart_mask((64, 64), margin_mm=-1.0)
    with pytest.raises(InputError):
        cardiac_contraction(0)
    with pytest.raises(InputError):
        phantom_geometry("axial")
    for bad in (dict(view="4ch"), dict(wall_mm=0.0), dict(ejection_fraction=0.95), dict(end_systole=0.7)):
        with pytest.raises(InputError):
            CineGeometry(**bad)


def test_nominal_geometry_per_view():
    for view in ("sax", "lax"):
        geom = CineGeometry(view=view)
        ph = cine_phantom(4, (48, 56), view, geometry=geom)
        assert ph.shape == (4, 48, 56)
        assert heart_mask((48, 56), view, geometry=geom).any()
    assert CineGeometry(view="sax").heart_center_mm != CineGeometry(view="lax").heart_center_mm


# --------------------------------------------------------------------------- phase


@pytest.mark.parametrize("shape", [(64, 64), (33, 70), (5, 3)])
def test_smooth_phase_bounded_and_smooth(shape):
    for seed in range(5):
        phase = smooth_phase(shape, rng=seed, max_rad=np.pi / 2)
        assert phase.shape == shape and phase.dtype == np.float32
        assert np.abs(phase).max() <= np.pi / 2 + 1e-6
        assert np.abs(phase).max() >= 0.5 * np.pi / 2
        if min(shape) >= 16:
            n = max(shape)
            d1 = max(np.abs(np.diff(phase, axis=a)).max() for a in (0, 1))
            d2 = max(np.abs(np.diff(phase, n=2, axis=a)).max() for a in (0, 1))
            assert d1 <= 6.0 * (np.pi / 2) / min(shape)
            assert d2 <= 60.0 * (np.pi / 2) / n**2


def test_smooth_phase_seeding_and_bound():
    np.testing.assert_array_equal(smooth_phase((32, 32), rng=1), smooth_phase((32, 32), rng=1))
    assert not np.array_equal(smooth_phase((32, 32), rng=1), smooth_phase((32, 32), rng=2))
    assert np.abs(smooth_phase((32, 32), rng=0, max_rad=0.2)).max() <= 0.2 + 1e-7
    assert np.all(smooth_phase((8, 8), rng=0, max_rad=0.0) == 0.0)
    with pytest.raises(InputError):
        smooth_phase((32, 32), max_rad=-1.0)
    with pytest.raises(InputError):
        smooth_phase((0, 32))


# --------------------------------------------------------------------------- real data


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_stack_and_single_slice_layouts(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 1000, size=(3, 5, 20, 24)).astype(np.int16)
    f4 = _write(tmp_path / "stack.npz", cine=stack)
    mid = load_cine_series(f4)
    assert mid.shape == (5, 20, 24) and mid.dtype == np.float32
    np.testing.assert_allclose(mid, stack[1] / stack[1].max(), rtol=1e-6)
    np.testing.assert_allclose(load_cine_series(f4, 2), stack[2] / stack[2].max(), rtol=1e-6)

    single = rng.integers(0, 30000, size=(4, 17, 19)).astype(np.int16)
    f3 = _write(tmp_path / "single.npz", cine=single, scale=np.float64(2.0))
    out = load_cine_series(str(f3))
    assert out.shape == (4, 17, 19) and out.max() == 1.0 and out.min() >= 0.0
    np.testing.assert_array_equal(out, load_cine_series(f3, 0))


def test_load_bad_inputs(tmp_path):
    good = np.ones((2, 3, 8, 8), np.int16)
    zero_slice = good.copy()
    zero_slice[1] = 0
    cases = {
        "missing": tmp_path / "missing.npz",
        "directory": tmp_path,
        "text": tmp_path / "text.npz",
        "npy": tmp_path / "array.npy",
        "no_cine": _write(tmp_path / "nocine.npz", images=good),
        "rank2": _write(tmp_path / "rank2.npz", cine=np.ones((8, 8))),
        "rank5": _write(tmp_path / "rank5.npz", cine=np.ones((1, 2, 3, 4, 5))),
        "zero": _write(tmp_path / "zero.npz", cine=zero_slice),
        "negative": _write(tmp_path / "neg.npz", cine=-good),
        "complex": _write(tmp_path / "complex.npz", cine=good.astype(np.complex64)),
    }
    cases["text"].write_text("not an archive")
    np.save(cases["npy"], good)
    for name, path in cases.items():
        with pytest.raises(InputError):
            load_cine_series(path, 1 if name == "zero" else None)
    stack = _write(tmp_path / "stack.npz", cine=good)
    single = _write(tmp_path / "single.npz", cine=good[0])
    for path, index in ((stack, 2), (stack, -1), (stack, 1.0), (single, 1), (single, -1)):
        with pytest.raises(InputError, match="slice_index"):
            load_cine_series(path, index)
    with pytest.raises(InputError, match="no array 'cine'"):
        load_cine_series(cases["no_cine"])
    with pytest.raises(InputError, match="all zero"):
        load_cine_series(cases["zero"], 1)


def test_real_files_load():
    data_dir = default_data_dir()
    if data_dir is None:
        pytest.skip("no shared/data directory of real cine series found (set CRUNET_DATA_DIR)")
    files = list_series(data_dir)
    if not files:
        pytest.skip(f"{data_dir} holds no .npz series")
    for path in files:
        series = load_cine_series(path)
        assert series.ndim == 3 and series.dtype == np.float32
        assert series.shape[0] >= 8 and min(series.shape[1:]) >= 64
        assert series.max() == 1.0 and series.min() >= 0.0
        # a cine is not static: consecutive frames differ
        assert np.abs(np.diff(series, axis=0)).mean() > 1e-3
        fitted = fit_to_matrix(series, (63, 81))
        assert fitted.shape == (series.shape[0], 63, 81)


def test_fit_to_matrix_shapes_and_crop():
    series = np.random.default_rng(0).random((3, 40, 60)).astype(np.float32)
    for shape in [(31, 31), (33, 47), (47, 33), (64, 96), (1, 1), (41, 61)]:
        out = fit_to_matrix(series, shape)
        assert out.shape == (3, *shape) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
    # centre crop to the target aspect ratio: the zero side bands of a wide image go away
    wide = np.zeros((2, 30, 60), np.float32)
    wide[:, :, 15:45] = 1.0
    np.testing.assert_allclose(fit_to_matrix(wide, (21, 21)), 1.0, atol=1e-6)
    # a constant series stays constant; time axis untouched
    np.testing.assert_allclose(fit_to_matrix(np.full((5, 17, 9), 0.5), (40, 20)), 0.5, atol=1e-6)


def test_fit_to_matrix_bad_inputs():
    with pytest.raises(InputError):
        fit_to_matrix(np.ones((8, 8)), (4, 4))
    with pytest.raises(InputError):
        fit_to_matrix(np.ones((2, 8, 8)), (0, 4))
    with pytest.raises(InputError):
        fit_to_matrix(np.ones((2, 8, 8), np.complex64), (4, 4))


def test_list_series_and_default_data_dir(tmp_path, monkeypatch):
    for name in ("b.npz", "a.npz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_series(tmp_path)] == ["a.npz", "b.npz"]
    with pytest.raises(InputError):
        list_series(tmp_path / "nope")

    monkeypatch.setenv(realdata.DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path.resolve()
    monkeypatch.setenv(realdata.DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(InputError, match=realdata.DATA_DIR_ENV):
        default_data_dir()

    monkeypatch.delenv(realdata.DATA_DIR_ENV)
    (tmp_path / "proj" / "shared" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "main" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "proj" / "main" / "sub")
    assert default_data_dir() == (tmp_path / "proj" / "shared" / "data").resolve()
