"""Figures users look at: the paper-style comparison (crops, error maps, x-t profiles)."""

import numpy as np

from recon.figures import _scores, comparison_figure
from recon.heart import heart_box
from recon.simulate.phantom import cine_phantom


def test_comparison_figure_titles_carry_the_crop_ssim(tmp_path):
    ref = cine_phantom(6, (64, 64), "sax", np.random.default_rng(0)).astype(np.float32)
    noisy = ref + 0.05 * np.random.default_rng(1).standard_normal(ref.shape).astype(np.float32)
    box = heart_box(ref)
    assert _scores(ref, ref, 0, box).endswith("this crop: SSIM 1.000")
    text = _scores(ref, noisy, 0, box)
    crop_ssim = float(text.rsplit(" ", 1)[-1])
    assert "PSNR" in text.splitlines()[0] and 0 < crop_ssim < 1
    out = comparison_figure(ref, {"noisy": noisy, "same": ref}, tmp_path / "fig.png")
    assert out.is_file() and out.stat().st_size > 10_000


def test_bank_depth_figure_one_column_per_r_and_a_clear_error_for_one_depth(tmp_path):
    import pytest

    from recon.errors import InputError
    from recon.figures import bank_depth_figure

    def row(psnr):
        return {"psnr_mean": psnr, "psnr_std": 1.0, "ssim_mean": 0.9, "ssim_std": 0.01}  # no dynamic PSNR: panel empty

    points = {4: [("2", row(40.0)), ("3", row(40.2)), ("all", row(40.5))],
              8: [("2", row(35.0)), ("all", row(35.4))]}
    out = bank_depth_figure(points, {4: 11, 8: 11}, tmp_path / "bank.png", title="t")
    assert out.is_file() and out.stat().st_size > 10_000
    with pytest.raises(InputError, match="at least two depths at every R"):
        bank_depth_figure({8: [("all", row(35.0))]}, {8: 3}, tmp_path / "one.png")
