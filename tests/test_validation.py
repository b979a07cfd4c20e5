"""crunet validate: held-out patients x (training | held-out) acquisitions x R, through the raw-data path."""

from dataclasses import replace

import pytest

from recon.io.raw import read_raw
from recon.simulate.acquisition import HELDOUT_SPACE, TRAIN_SPACE
from recon.train.config import DataConfig
from crunet.validation import ORACLE, SETS, run_validation, write_cases

TINY = dict(matrix=(32, 32), phase_fraction=(1.0, 1.0), frames=(3, 3), coil_counts=(3,), n_acs=8,
            readout_oversampling=(2,))
CFG = DataConfig(images="phantom", train_space=replace(TRAIN_SPACE, **TINY),
                 heldout_space=replace(HELDOUT_SPACE, **{**TINY, "coil_counts": (5,)}), coil_grid=16)


def test_cases_are_the_same_slice_at_every_r(tmp_path):
    files = write_cases(tmp_path, CFG, accelerations=(4, 8), cases=2, log=lambda *_: None)
    assert set(files) == set(SETS) and all(len(files[s][r]) == 2 for s in SETS for r in (4, 8))
    a, b = read_raw(files["xval"][4][0]), read_raw(files["xval"][8][0])
    assert a.slices[0].n_coils == 5 and read_raw(files["val"][4][0]).slices[0].n_coils == 3
    assert a.noise is not None  # a noise scan comes first
    assert a.slices[0].acceleration == 4 and b.slices[0].acceleration == 8
    both = a.slices[0].mask[0] & b.slices[0].mask[0]  # lines both acquired hold the same data
    assert both.sum() >= 8 and (a.slices[0].kspace[:, :, both] == b.slices[0].kspace[:, :, both]).all()


def test_validation_report(tmp_path):
    res = run_validation(tmp_path, ("zf", "sense"), cfg=CFG, accelerations=(4,), cases=2, device="cpu",
                         sense_grid=(0.0, 0.1), oracle_accelerations=(4,), log=lambda *_: None)
    for s in SETS:
        rows = res["sets"][s][4]
        assert set(rows) == {"zf", "sense", ORACLE} and rows["zf"]["n_slices"] == 2
        # the oracle is the best of the grid per case: never below either grid member's mean
        grid = run_validation(tmp_path / "grid", ("sense:lam=0", "sense:lam=0.1"), cfg=CFG, accelerations=(4,), cases=2,
                              device="cpu", sense_grid=(), log=lambda *_: None)["sets"][s][4]
        assert rows[ORACLE]["psnr_mean"] >= max(g["psnr_mean"] for g in grid.values()) - 1e-9
        # the centre oracle chooses its own weight per case
        assert rows[ORACLE]["centre_psnr_mean"] >= max(g["centre_psnr_mean"] for g in grid.values()) - 1e-9
        assert len(rows["zf"]["centre_psnr_cases"]) == 2
    md = (tmp_path / "validation.md").read_text()
    assert "held-out acquisitions" in md and "| 4 | sense |" in md and "gap" in md
    assert "PSNR centre" in md and "| centre | 4 | sense |" in md
    assert (tmp_path / "validation.json").is_file()


def test_a_folder_keeps_the_cases_it_was_made_with(tmp_path):
    """Cases made with one seam setting are not mixed with another's: a clear error names both."""
    from recon.errors import InputError

    write_cases(tmp_path, CFG, accelerations=(4,), cases=1, log=lambda *_: None)
    write_cases(tmp_path, CFG, accelerations=(4,), cases=1, log=lambda *_: None)  # same setting: reused
    with pytest.raises(InputError, match="seam_rows.*another --out"):
        write_cases(tmp_path, replace(CFG, seam_rows=4), accelerations=(4,), cases=1, log=lambda *_: None)
