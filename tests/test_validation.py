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


def test_adding_an_r_keeps_the_files_made_before(tmp_path):
    """A second R added to a folder writes only that R's files: the first R's files keep their time
    (the rows computed on them are keyed by it) and the new files are those a single run makes."""
    one = write_cases(tmp_path / "a", CFG, accelerations=(8,), cases=1, log=lambda *_: None, sets=("xval",))
    before = one["xval"][8][0].stat().st_mtime_ns
    both = write_cases(tmp_path / "a", CFG, accelerations=(8, 4), cases=1, log=lambda *_: None, sets=("xval",))
    assert both["xval"][8][0].stat().st_mtime_ns == before
    fresh = write_cases(tmp_path / "b", CFG, accelerations=(8, 4), cases=1, log=lambda *_: None, sets=("xval",))
    added, made = read_raw(both["xval"][4][0]).slices[0], read_raw(fresh["xval"][4][0]).slices[0]
    assert (added.kspace == made.kspace).all() and (added.mask == made.mask).all()


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
    assert "default `refine=motion`" in md and res["default_refine"] == "motion"  # what a learned row is
    assert (tmp_path / "validation.json").is_file()


def test_a_folder_keeps_the_cases_it_was_made_with(tmp_path):
    """Cases made with one seam setting are not mixed with another's: a clear error names both."""
    from recon.errors import InputError

    write_cases(tmp_path, CFG, accelerations=(4,), cases=1, log=lambda *_: None)
    write_cases(tmp_path, CFG, accelerations=(4,), cases=1, log=lambda *_: None)  # same setting: reused
    with pytest.raises(InputError, match="seam_rows.*another --out"):
        write_cases(tmp_path, replace(CFG, seam_rows=4), accelerations=(4,), cases=1, log=lambda *_: None)


def test_another_heldout_coil_model_is_recorded_and_named(tmp_path):
    """--heldout-coils: the held-out set with another coil model (here ring x4; bart:8 for
    BART's) only, its own record (a folder of the default cases refuses it), the report names it."""
    from recon.errors import InputError
    from crunet.validation import heldout_coils

    cfg = replace(CFG, heldout_space=replace(CFG.heldout_space, coil_families=("ring",), coil_counts=(4,)))
    assert heldout_coils(DataConfig()) is None  # the default's record is that of folders made before
    assert heldout_coils(CFG) == "dipole x5" and heldout_coils(cfg) == "ring x4"
    files = write_cases(tmp_path / "ring", cfg, accelerations=(4,), cases=1, log=lambda *_: None, sets=("xval",))
    assert set(files) == {"xval"} and read_raw(files["xval"][4][0]).slices[0].n_coils == 4
    assert not (tmp_path / "ring" / "val").exists()
    with pytest.raises(InputError, match="ring x4.*dipole x5.*another --out"):
        write_cases(tmp_path / "ring", CFG, accelerations=(4,), cases=1, log=lambda *_: None)
    with pytest.raises(InputError, match="validation sets"):
        write_cases(tmp_path / "x", cfg, accelerations=(4,), cases=1, log=lambda *_: None, sets=("test",))
    res = run_validation(tmp_path / "ring", ("zf",), cfg=cfg, accelerations=(4,), cases=1, device="cpu",
                         sense_grid=(), sets=("xval",), log=lambda *_: None)
    assert set(res["sets"]) == {"xval"} and res["heldout_coils"] == "ring x4"
    assert "## xval: held-out patient, held-out acquisitions: ring x4 coils" in (tmp_path / "ring" / "validation.md").read_text()


def test_heldout_coils_option_parses_and_checks():
    from recon.errors import InputError
    from crunet.cli.validate import heldout_space

    space = heldout_space("bart:8")
    assert space.coil_families == ("bart",) and space.coil_counts == (8,) and space.snr_bands == HELDOUT_SPACE.snr_bands
    assert heldout_space("ring").coil_counts == HELDOUT_SPACE.coil_counts
    with pytest.raises(InputError, match="bart:8"):
        heldout_space("bart")  # the held-out counts exceed BART's 8 coils
    with pytest.raises(InputError, match="integers"):
        heldout_space("ring:a")
    with pytest.raises(InputError, match="coil_families"):
        heldout_space("helmet:8")


def test_cases_are_split_by_mask_kind(tmp_path):
    """Each case's mask is recorded as fixed or shifted, and the report compares the default
    model with the classical methods for each kind (shifted masks favour L+S)."""
    from crunet.validation import DEFAULT_WEIGHTS, markdown, mask_kind

    cfg = replace(CFG, train_space=replace(CFG.train_space, shifted_mask=1.0),
                  heldout_space=replace(CFG.heldout_space, shifted_mask=0.0))
    files = write_cases(tmp_path, cfg, accelerations=(4,), cases=1, log=lambda *_: None)
    assert mask_kind(files["val"][4][0]) == "shifted" and mask_kind(files["xval"][4][0]) == "fixed"
    res = run_validation(tmp_path, ("zf",), cfg=cfg, accelerations=(4,), cases=1, device="cpu", sense_grid=(),
                         log=lambda *_: None)
    assert res["mask_kinds"] == {"val": {4: ["shifted"]}, "xval": {4: ["fixed"]}}
    rows = {"zf": {"psnr_cases": [30.0, 31.0, 32.0]}, "lps": {"psnr_cases": [33.0, 36.0, 34.0]},
            DEFAULT_WEIGHTS: {"psnr_cases": [35.0, 34.0, 37.0]}}
    md = markdown({"cases": 3, "methods": ["zf", "lps", DEFAULT_WEIGHTS], "sets": {"xval": {8: rows}},
                   "mask_kinds": {"xval": {8: ["fixed", "shifted", "fixed"]}}})
    assert "| xval | 8 | fixed | 2 | +5.00 | n/a | +2.50 |" in md
    assert "| xval | 8 | shifted | 1 | +3.00 | n/a | -2.00 |" in md


def test_paired_masks_acquire_each_scene_with_both_masks_and_report_the_gain(tmp_path):
    """--paired-masks: each case written with a fixed and a shifted mask of the same scene (the lines
    both sample hold the same data), its own folder record, and a table of each method's mean per
    mask kind and the shifted - fixed difference."""
    import numpy as np

    from recon.errors import InputError
    from crunet.validation import markdown, mask_kind

    files = write_cases(tmp_path, CFG, accelerations=(4,), cases=1, log=lambda *_: None, sets=("xval",),
                        paired_masks=True)
    fixed, shifted = files["xval"][4]
    assert fixed.name == "r4_case0_fixed.h5" and shifted.name == "r4_case0_shifted.h5"
    assert mask_kind(fixed) == "fixed" and mask_kind(shifted) == "shifted"
    a, b = read_raw(fixed).slices[0], read_raw(shifted).slices[0]
    both = a.mask & b.mask
    assert both.any() and np.array_equal(a.kspace.transpose(0, 2, 1, 3)[both], b.kspace.transpose(0, 2, 1, 3)[both])
    with pytest.raises(InputError, match="another --out"):
        write_cases(tmp_path, CFG, accelerations=(4,), cases=1, log=lambda *_: None, sets=("xval",))
    rows = {"zf": {"psnr_cases": [30.0, 30.5]}, "lps": {"psnr_cases": [33.0, 38.0]}}
    md = markdown({"cases": 1, "methods": ["zf", "lps"], "sets": {"xval": {8: rows}}, "paired_masks": True,
                   "mask_kinds": {"xval": {8: ["fixed", "shifted"]}}})
    assert "| xval | 8 | lps | 33.00 | 38.00 | +5.00 |" in md and "| xval | 8 | zf | 30.00 | 30.50 | +0.50 |" in md


def test_tables_say_whether_learned_rows_are_refined():
    """A run that recorded the default refinement names it; one made before that default (no record)
    says its learned rows are the network alone."""
    from crunet.validation import refine_line

    assert "default `refine=motion`" in refine_line({"default_refine": "motion"})
    assert "the network alone" in refine_line({})
