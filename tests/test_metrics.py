"""Tests of recon.metrics and recon.stats against scikit-image and synthetic series."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recon import metrics
from recon.errors import InputError
from recon.metrics import (
    center_crop,
    cmrxrecon_crop_size,
    dynamic_mask,
    masked_psnr,
    masked_ssim,
    nmse,
    psnr,
    region_metrics,
    region_split_metrics,
    ssim,
    ssim_torch,
    summarise,
)
from recon.metrics import piq_haarpsi
from recon.stats import compare_methods



@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _complex_series(rng: np.random.Generator, t: int, ny: int, nx: int) -> np.ndarray:
    """Random complex [t, ny, nx] with a different scale (so maximum) per frame."""
    scale = rng.uniform(0.1, 50.0, size=(t, 1, 1))
    return scale * (rng.standard_normal((t, ny, nx)) + 1j * rng.standard_normal((t, ny, nx)))


def _structured_series(rng: np.random.Generator, t: int, ny: int, nx: int) -> np.ndarray:
    """Piecewise-smooth 'anatomy' (ellipses, gradient) per frame, different frame maxima."""
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    frames = []
    for k in range(t):
        cy, cx = ny / 2 + 2 * np.sin(k), nx / 2 + 3 * np.cos(k)
        img = 0.3 + 0.2 * xx / nx
        img = img + 0.7 * (((yy - cy) / (0.3 * ny)) ** 2 + ((xx - cx) / (0.25 * nx)) ** 2 < 1)
        img = img + 0.4 * (((yy - cy + 3) / (0.1 * ny)) ** 2 + ((xx - cx) / (0.1 * nx)) ** 2 < 1)
        frames.append((k + 1) * 7.0 * img)
    return np.stack(frames) * np.exp(1j * 0.3)


def _cmrx_reference(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CMRxRecon Evaluation.calmetric on magnitude frames [t, y, x]."""
    p, s, n = [], [], []
    for g, r in zip(np.abs(gt), np.abs(pred)):
        g, r = g / g.max(), r / r.max()
        p.append(peak_signal_noise_ratio(g, r, data_range=g.max()))
        s.append(structural_similarity(g, r, data_range=g.max()))
        n.append(np.linalg.norm(g - r) ** 2 / np.linalg.norm(g) ** 2)
    return np.array(p), np.array(s), np.array(n)


# ---------------------------------------------------------------------------
# agreement with scikit-image / CMRxRecon


@pytest.mark.parametrize("shape", [(3, 32, 32), (4, 33, 47), (2, 7, 9), (2, 64, 51)])
def test_random_matches_skimage(rng: np.random.Generator, shape: tuple[int, int, int]) -> None:
    ref = _complex_series(rng, *shape)
    rec = ref + 0.5 * _complex_series(rng, *shape)
    want_p, want_s, want_n = _cmrx_reference(ref, rec)
    np.testing.assert_allclose(psnr(ref, rec), want_p, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ssim(ref, rec), want_s, rtol=0, atol=1e-6)
    np.testing.assert_allclose(nmse(ref, rec), want_n, rtol=1e-10)
    out = psnr(ref, rec)
    assert out.dtype == np.float64 and out.shape == (shape[0],)


@pytest.mark.parametrize("shape", [(3, 48, 40), (2, 45, 61)])
def test_structured_matches_skimage(rng: np.random.Generator, shape: tuple[int, int, int]) -> None:
    ref = _structured_series(rng, *shape)
    rec = ref * (1 + 0.02 * rng.standard_normal(shape)) + 0.3 * rng.standard_normal(shape)
    want_p, want_s, _ = _cmrx_reference(ref, rec)
    np.testing.assert_allclose(psnr(ref, rec), want_p, atol=1e-9)
    np.testing.assert_allclose(ssim(ref, rec), want_s, atol=1e-6)
    assert np.all(want_s > 0.3) and np.all(want_s < 1)


def test_torch_and_real_inputs_match_numpy(rng: np.random.Generator) -> None:
    ref = _complex_series(rng, 2, 20, 24)
    rec = ref + _complex_series(rng, 2, 20, 24)
    tref, trec = torch.from_numpy(ref).to(torch.complex64), torch.from_numpy(rec).to(torch.complex64)
    np.testing.assert_allclose(ssim(tref, trec), ssim(ref, rec), atol=1e-5)
    np.testing.assert_allclose(psnr(np.abs(ref), np.abs(rec)), psnr(ref, rec), atol=1e-12)
    # a 2-D image is one frame
    assert psnr(ref[0], rec[0]).shape == (1,)


def test_identical_images(rng: np.random.Generator) -> None:
    ref = _structured_series(rng, 3, 32, 30)
    assert np.all(np.isinf(psnr(ref, ref.copy())))
    np.testing.assert_allclose(ssim(ref, ref.copy()), 1.0, atol=1e-12)
    np.testing.assert_allclose(nmse(ref, ref.copy()), 0.0, atol=1e-15)
    # scaling a frame does not change anything after max normalisation
    np.testing.assert_allclose(ssim(ref, 3.7 * ref), 1.0, atol=1e-12)


def test_zero_reconstruction_frame_is_scored_not_nan(rng: np.random.Generator) -> None:
    ref = _structured_series(rng, 2, 24, 24)
    rec = ref.copy()
    rec[1] = 0
    p = psnr(ref, rec)
    assert np.isinf(p[0]) and np.isfinite(p[1])


# ---------------------------------------------------------------------------
# ssim_torch as a loss


def test_ssim_torch_gradient_and_shapes(rng: np.random.Generator) -> None:
    x_np = np.abs(_structured_series(rng, 3, 32, 28)).astype(np.float32)
    x_np /= x_np.max()
    y = torch.from_numpy(x_np + 0.05 * rng.standard_normal(x_np.shape).astype(np.float32))
    x = torch.from_numpy(x_np).requires_grad_(True)
    val = ssim_torch(x, y, data_range=1.0)
    assert val.shape == (3,)
    (1 - val.mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # [b, 1, y, x] gives the same as [b, y, x]; a per-image range tensor is accepted
    val4 = ssim_torch(x.detach().unsqueeze(1), y.unsqueeze(1), data_range=torch.ones(3))
    torch.testing.assert_close(val4, val.detach())
    # float32 result agrees with skimage on the same data
    want = [structural_similarity(a, b, data_range=1.0) for a, b in zip(x_np, y.numpy())]
    np.testing.assert_allclose(val.detach().numpy(), want, atol=2e-5)


def test_ssim_torch_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="smaller than"):
        ssim_torch(torch.rand(1, 5, 5), torch.rand(1, 5, 5), 1.0)
    with pytest.raises(InputError, match="shape mismatch"):
        ssim_torch(torch.rand(1, 9, 9), torch.rand(1, 9, 10), 1.0)
    with pytest.raises(InputError, match="win_size"):
        ssim_torch(torch.rand(1, 9, 9), torch.rand(1, 9, 9), 1.0, win_size=4)


# ---------------------------------------------------------------------------
# crop


def test_crop(rng: np.random.Generator) -> None:
    ref = _complex_series(rng, 2, 41, 60)
    rec = ref + _complex_series(rng, 2, 41, 60)
    h, w = 20, 21
    y0, x0 = 41 // 2 - h // 2, 60 // 2 - w // 2
    want_p, want_s, _ = _cmrx_reference(ref[:, y0:y0 + h, x0:x0 + w], rec[:, y0:y0 + h, x0:x0 + w])
    np.testing.assert_allclose(psnr(ref, rec, crop=(h, w)), want_p, atol=1e-9)
    np.testing.assert_allclose(ssim(ref, rec, crop=(h, w)), want_s, atol=1e-6)
    # the FFT centre pixel stays the centre (odd and even sizes)
    for n, c in [(9, 4), (9, 5), (10, 4), (10, 5)]:
        img = torch.zeros(1, n, n)
        img[0, n // 2, n // 2] = 1
        assert center_crop(img, (c, c))[0, c // 2, c // 2] == 1
    # run4Ranking on the 2x oversampled 246 x 512 image keeps 123 x 171 pixels: two thirds of
    # the 256-pixel field of view; the same region on the recon grid (oversampling removed)
    assert cmrxrecon_crop_size((12, 246, 512), removed_oversampling=1) == (123, 171)
    assert cmrxrecon_crop_size((12, 246, 256)) == (123, 171)
    assert cmrxrecon_crop_size((5, 4)) == (3, 3)
    with pytest.raises(InputError, match="crop"):
        psnr(ref, rec, crop=(42, 10))


# ---------------------------------------------------------------------------
# dynamic / static regions


def _moving_disc(rng: np.random.Generator, t: int = 12, n: int = 64, noise: float = 0.005
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Static textured background with a bright disc moving left-right; returns (series, swept area)."""
    yy, xx = np.mgrid[:n, :n].astype(float)
    background = 0.3 + 0.1 * np.sin(xx / 5) * np.cos(yy / 7)
    frames, swept = [], np.zeros((n, n), bool)
    for k in range(t):
        cx = n / 2 + 10 * np.sin(2 * np.pi * k / t)
        disc = (yy - n / 2) ** 2 + (xx - cx) ** 2 < 8 ** 2
        swept |= disc
        frames.append(background + 0.7 * disc + noise * rng.standard_normal((n, n)))
    return np.stack(frames), swept


def test_dynamic_mask_finds_moving_disc(rng: np.random.Generator) -> None:
    series, swept = _moving_disc(rng)
    mask = dynamic_mask(series)
    assert mask.shape == (64, 64) and mask.dtype == bool
    far = np.ones_like(swept)
    far[16:48, 8:56] = False  # well away from the disc path
    assert mask[far].mean() == 0.0
    assert mask[swept].mean() > 0.5
    assert mask[32, 32 - 16] and mask[32, 32 + 16]  # leading and trailing edges of the path
    # fixed threshold rule
    assert dynamic_mask(series, threshold=10.0).sum() == 0
    assert dynamic_mask(series, threshold=0.05)[32, 16]
    with pytest.raises(InputError, match="2 frames"):
        dynamic_mask(series[:1])


def test_dynamic_threshold_is_measured_from_the_noise(rng: np.random.Generator) -> None:
    """The threshold follows the series' own noise (4x the static body's temporal std): at 4x the noise it
    is ~4x higher and static tissue stays static; a few flickering pixels do not move it (a rule on the
    maximum std, as before, follows them)."""
    from recon.metrics.regions import dynamic_region, dynamic_threshold

    low, swept = _moving_disc(rng, noise=0.005)
    high, _ = _moving_disc(rng, noise=0.02)
    t_low, t_high = dynamic_threshold(low), dynamic_threshold(high)
    assert 3.0 < t_high / t_low < 5.0
    mask, t = dynamic_region(low)  # both at once, the temporal std computed once
    assert t == t_low and np.array_equal(mask, dynamic_mask(low))
    far = np.ones_like(swept)
    far[16:48, 8:56] = False
    for series in (low, high):
        mask = dynamic_mask(series)
        assert mask[far].mean() < 0.002 and mask[swept].mean() > 0.5
    spiked = low.copy()
    spiked[::2, 2:4, 2:4] += 0.6  # a few flickering pixels (below the frame maximum)
    assert dynamic_threshold(spiked) == pytest.approx(t_low, rel=0.05)
    with pytest.raises(InputError, match="noise_multiple"):
        dynamic_mask(low, noise_multiple=0)


def test_region_metrics(rng: np.random.Generator) -> None:
    series, _ = _moving_disc(rng)
    mask = dynamic_mask(series)
    # temporal blurring inside the moving region (keeps each frame's maximum, which
    # matters: every frame is normalised by its own maximum), small noise elsewhere
    rec = np.where(mask, 0.5 * (series + np.roll(series, 1, axis=0)), series)
    rec = rec + 0.002 * rng.standard_normal(series.shape)
    # whole-image mask gives the global metrics
    full = np.ones((64, 64), bool)
    np.testing.assert_allclose(masked_psnr(series, rec, full), psnr(series, rec), atol=1e-12)
    np.testing.assert_allclose(masked_ssim(series, rec, full), ssim(series, rec), atol=1e-12)
    reg = region_metrics(series, rec, mask)
    assert set(reg) == {"psnr", "ssim"} and reg["psnr"].shape == (12,)
    split = region_split_metrics(series, rec)
    assert set(split) >= {"dynamic_psnr", "static_psnr", "dynamic_ssim", "static_ssim"}
    assert split["dynamic_psnr"] < split["static_psnr"] - 10
    assert split["dynamic_ssim"] < split["static_ssim"]
    assert 0 < split["dynamic_fraction"] < 0.5
    with pytest.raises(InputError, match="mask"):
        masked_psnr(series, rec, np.zeros((64, 64), bool))
    with pytest.raises(InputError, match="mask"):
        masked_psnr(series, rec, np.ones((63, 64), bool))
    with pytest.raises(InputError, match="no dynamic pixel"):
        region_split_metrics(np.repeat(series[:1], 4, 0), rec[:4])


# ---------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_input_error(rng: np.random.Generator) -> None:
    ref = _complex_series(rng, 2, 16, 16)
    with pytest.raises(InputError, match="shape mismatch"):
        psnr(ref, ref[:, :, :15])
    bad = ref.copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        ssim(ref, bad)
    with pytest.raises(InputError, match="non-finite"):
        nmse(bad, ref)
    zero = ref.copy()
    zero[1] = 0
    with pytest.raises(InputError, match=r"frame\(s\) \[1\] are all zero"):
        psnr(zero, ref)
    with pytest.raises(InputError, match=r"\[t, y, x\]"):
        psnr(ref[None], ref[None])
    with pytest.raises(InputError):
        psnr(np.array(["a", "b"]), np.array(["a", "b"]))


# ---------------------------------------------------------------------------
# HaarPSI and summary


def test_haarpsi_with_piq(rng: np.random.Generator) -> None:
    ref = _structured_series(rng, 2, 40, 36)
    rec = ref + 0.5 * _complex_series(rng, 2, 40, 36) / 50
    got = metrics.haarpsi(ref, rec)
    assert got.shape == (2,) and np.all((got > 0) & (got < 1))
    np.testing.assert_allclose(metrics.haarpsi(ref, ref), 1.0, atol=1e-6)
    summary = summarise(ref, rec)
    assert set(summary) - {"dists", "dists_unavailable"} == {"psnr", "ssim", "nmse", "haarpsi"}
    np.testing.assert_allclose(summary["haarpsi"], got.mean())
    assert "haarpsi_unavailable" in summarise(ref, rec, crop=(12, 12))


def test_summarise_without_piq(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise RuntimeError("HaarPSI needs the optional 'piq' package")

    monkeypatch.setattr(piq_haarpsi, "load_piq_haarpsi", missing)
    ref = _structured_series(rng, 2, 24, 24)
    rec = ref + 0.5 * _complex_series(rng, 2, 24, 24) / 50
    summary = summarise(ref, rec)
    assert "haarpsi" not in summary and "piq" in summary["haarpsi_unavailable"]
    np.testing.assert_allclose(summary["psnr"], psnr(ref, rec).mean())
    np.testing.assert_allclose(summary["ssim"], ssim(ref, rec).mean())
    with pytest.raises(RuntimeError, match="piq"):
        metrics.haarpsi(ref, rec)


# ---------------------------------------------------------------------------
# Wilcoxon + Bonferroni


def test_compare_methods(rng: np.random.Generator) -> None:
    n = 30
    ref = 40 + rng.standard_normal(n)
    scores = {
        "ours": ref,
        "better": ref + 1.0 + 0.2 * rng.standard_normal(n),
        "worse": ref - 2.0 + 0.5 * rng.standard_normal(n),
        "tie": ref + 0.3 * rng.standard_normal(n),
        "same": ref.copy(),
    }
    out = {r["method"]: r for r in compare_methods(scores, "ours")}
    assert list(out) == ["better", "worse", "tie", "same"]
    assert all(r["alpha_corrected"] == pytest.approx(0.0125) for r in out.values())
    assert out["better"]["significant"] and out["better"]["median_difference"] > 0.5
    assert out["worse"]["significant"] and out["worse"]["median_difference"] < -1
    assert not out["tie"]["significant"] and out["tie"]["p_value"] > 0.0125
    assert not out["same"]["significant"] and out["same"]["p_value"] == 1.0
    assert out["better"]["n"] == n


def test_compare_methods_bad_input() -> None:
    with pytest.raises(InputError, match="reference method"):
        compare_methods({"a": [1, 2, 3]}, "b")
    with pytest.raises(InputError, match="paired"):
        compare_methods({"a": [1, 2, 3], "b": [1, 2]}, "a")
    with pytest.raises(InputError, match="non-finite"):
        compare_methods({"a": [1, 2, 3], "b": [1, np.inf, 2]}, "a")
