"""crunet report: a tiny held-out series at two R values, tiny learned stand-ins (tests/conftest.py)."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from crunet.cli import main
from crunet.demo import DEFAULT_CONFIG, demo_series
from crunet.report import LEARNED, REPORT_SERIES, ReportConfig, read_series, check_heldout, learned_methods, run_report
from crunet.report_markdown import min_pairs, power_note
from recon.errors import InputError
from recon.weights import SHIPPED_WEIGHTS, WEIGHTS_ENV

#: The demo's held-out acquisition (dipole coils, SNR 50, linear order), shrunk to run in seconds.
TINY_SCAN = replace(DEFAULT_CONFIG, matrix=(32, 32), fov_mm=(300.0, 300.0), n_phases=4, n_coils=4, n_acs=8)
INSTALLED = ["crnn", "promptmr", "crunet", "crunet_conv", "crunet_ca"]  # the tiny weights of conftest, in table order


def write_series(path, patient="SCD0000401", slices=2):
    """A phantom cine ``(slices, 6, 40, 40)`` stored like the shipped series, with a patient id."""
    from recon.simulate.phantom import cine_phantom

    cine = np.stack([cine_phantom(6, (40, 40), "sax", s) for s in range(slices)])
    np.savez(path, cine=(1000 * cine).astype(np.int16), patient_id=patient)
    return path


def save_bank_weights(directory, depth):
    """Tiny CRUNet-MR w/ CA weights whose bank holds the ``depth`` most recent cascades."""
    import torch

    from recon.models.config import CRUNetConfig, ModelConfig
    from recon.models.registry import build_model
    from recon.weights import save_weights

    cfg = ModelConfig(name="crunet", crunet=CRUNetConfig(channels=4, cascades=3, fusion="ca", bank_depth=depth))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(depth)
        return save_weights(build_model(cfg), cfg, directory)


@pytest.fixture(autouse=True)
def only_test_weights(monkeypatch):
    """The reports of these tests see the tiny stand-ins (and what a test installs), never the
    project's weights/: what is shipped there changes, the tests' expectations do not."""
    import recon.weights as W

    monkeypatch.setattr(W, "builtin_weights_dirs", lambda: [])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import recon.weights as W

    d = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(W, "builtin_weights_dirs", lambda: [])
        mp.delenv("CRUNET_VGG16_WEIGHTS", raising=False)
        # the demo's 2 slices of the shipped held-out patient (the default is all 11: slower)
        cfg = ReportConfig(out=str(d / "out"), accelerations=(4, 8), scan=TINY_SCAN, device="cpu",
                           series=str(demo_series()))
        return run_report(cfg, log=lambda *_: None), d / "out"


def test_outputs_exist(report):
    res, out = report
    for name in ("README.md", "report.json", "regions.png"):
        assert (out / name).is_file(), name
    for r in (4, 8):
        for name in ("table.md", "table.csv", "results.csv", "stats.csv", f"heldout_r{r}_slice0.png",
                     f"heldout_r{r}_slice1.png"):
            assert (out / f"r{r}" / name).is_file(), f"r{r}/{name}"
    saved = json.loads((out / "report.json").read_text())
    from recon.coils.bart_io import bart_executable

    bart = ["bart_tv"] if bart_executable() is not None else []  # BART's temporal TV where the tool is
    # the learned methods as every entry point runs them (refined), and the reference's network alone beside them
    assert saved["methods"] == ["zf", "sense", "lps"] + bart + INSTALLED + ["crunet_ca:refine=off"]
    assert set(saved["accelerations"]) == {"4", "8"} and saved["default_refine"] == "motion"


def test_table_holds_every_method_and_says_what_is_missing(report):
    res, out = report
    md = (out / "README.md").read_text()
    for r in (4, 8):
        assert f"### R = {r} (n = 2 slices)" in md
        assert res["accelerations"][r]["n"] == 2
    for label in ("zero-filled (`zf`)", "SENSE (`sense`)", "L+S (`lps`)", "CRNN-MRI (`crnn`)", "PromptMR (`promptmr`)",
                  "CRUNet-MR (`crunet`)",
                  "CRUNet-MR w/ Conv (`crunet_conv`)", "CRUNet-MR w/ CA (`crunet_ca`)"):
        assert md.count(f"| {label} | ") >= 3, label  # the methods list and one table row per R
    for name in ("crunet_ca_k2", "crunet_ca_k3"):
        assert f"(`{name}`) | not shipped yet | – |" in md and res["missing"][name] == "not shipped yet"
    assert "**DISTS: n/a** — " in md and "VGG16" in md  # the reason, not a bare n/a
    assert "| DISTS |" in md and "HaarPSI" in md and "s / slice" in md
    # 2 slices: no test can pass its Bonferroni threshold, and the report says so
    assert "n = 2 slices is too small for the test to reach the threshold" in md and "n >= 9 is needed" in md
    assert not [line for line in md.splitlines() if line.startswith("| ") and "†" in line]
    assert "Regenerate with `crunet report --out" in md and "--accelerations 4 8" in md
    assert "Machine: " in md and "weights/SPLIT.md" in md and "`sunnybrook_SCD0000401_midventricular.npz`" in md
    assert res["data"]["patient"] == "SCD0000401" and res["data"]["slices"] == 2
    assert all("wrap rows" in res["weights"][m] for m in INSTALLED)  # how each model was trained
    assert md.count("| CRUNet-MR w/ CA, network alone (`crunet_ca:refine=off`) | ") >= 3
    assert "default `refine=motion`" in md  # what a learned row is
    assert all(res["weights"][m].endswith(res["training"][m]) for m in INSTALLED)


def test_training_summary_reads_the_shipped_files(tmp_path, monkeypatch):
    """Steps from metrics.csv, fine-tuning from train_config.yaml, wrapped rows from the config."""
    from crunet.report import training_summary

    d = save_bank_weights(tmp_path / "w" / "crunet_ca_k2", 2)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "w"))
    assert training_summary("crunet_ca_k2") == "wrap rows 0"
    (d / "metrics.csv").write_text("epoch,step,train_loss\n1,250,0.5\n2,500,0.4\n")
    assert training_summary("crunet_ca_k2") == "wrap rows 0, 500 steps"
    (d / "train_config.yaml").write_text("train:\n  init_weights: runs/x/weights\n")
    assert training_summary("crunet_ca_k2").startswith("wrap rows 0, 500 steps fine-tuning earlier weights")


def test_regions_and_bank_depth_sections(report):
    res, out = report
    md = (out / "README.md").read_text()
    assert "![dynamic and static regions](regions.png)" in md and "| 8 | CRUNet-MR w/ CA (`crunet_ca`) |" in md
    shares = res["regions"]["dynamic_share"]
    assert len(shares) == 2 and all(0 < v < 0.5 for v in shares.values())
    bank = md.split("## 4.")[1]
    assert "crunet_ca_k2`): not shipped yet" in bank and "crunet_ca_k3`): not shipped yet" in bank
    assert "![R = 4, heldout_r4_slice0](r4/heldout_r4_slice0.png)" in md


def test_quick_with_bank_depth_weights(tmp_path, monkeypatch, tiny_weights):
    """One R, one slice; installed K=2 weights and the K = all control join the table and the
    bank-depth section; the shipped crunet_ca stands beside the line."""
    save_bank_weights(tmp_path / "w" / "crunet_ca_k2", 2)
    save_bank_weights(tmp_path / "w" / "crunet_ca_kall", 0)
    monkeypatch.setenv(WEIGHTS_ENV, os.pathsep.join([str(tmp_path / "w"), str(tiny_weights)]))
    series = write_series(tmp_path / "heldout.npz")  # a phantom stands in for another held-out series
    res = run_report(ReportConfig(out=str(tmp_path / "q"), quick=True, series=str(series), scan=TINY_SCAN,
                                  device="cpu"), log=lambda *_: None)
    assert list(res["accelerations"]) == [8] and res["accelerations"][8]["n"] == 1
    assert "crunet_ca_k2" in res["methods"] and "crunet_ca_kall" in res["methods"]
    assert res["bank_depths"] == {"crunet_ca": 0, "crunet_ca_kall": 0, "crunet_ca_k2": 2}
    md = (tmp_path / "q" / "README.md").read_text()
    assert "quick check" in md and "n = 1 slice: no significance test" in md
    assert "| 8 | CRUNet-MR w/ CA, K=2 (`crunet_ca_k2`) | 2 |" in md and "| 8 | CRUNet-MR w/ CA (`crunet_ca`) | all |" in md
    # the paper's Fig. 5: quality against K, linked from the bank section
    assert res["bank_figure"] == "bank_depth.png" and (tmp_path / "q" / "bank_depth.png").stat().st_size > 5000
    bank = md.split("## 4.")[1].split("## 5.")[0]
    assert "![quality against the bank depth](bank_depth.png)" in bank
    assert "| 8 | CRUNet-MR w/ CA, K=all (ablation recipe) (`crunet_ca_kall`) | all |" in bank
    assert "K = 2, all share the recipe and the steps" in bank and "the figure draws it beside the line" in bank


def test_learned_list_covers_the_shipped_names_and_reports_broken_weights(tmp_path, monkeypatch, tiny_weights):
    assert set(SHIPPED_WEIGHTS) <= set(LEARNED) and LEARNED[-1] == "crunet_ca"
    broken = save_bank_weights(tmp_path / "crunet_ca_k3", 3)
    (broken / "config.yaml").write_text((broken / "config.yaml").read_text() + "\n# edited\n")
    monkeypatch.setenv(WEIGHTS_ENV, os.pathsep.join([str(tmp_path), str(tiny_weights)]))
    installed, missing, _ = learned_methods()
    assert installed == INSTALLED
    assert missing["crunet_ca_k3"].startswith("installed but unusable") and missing["crunet_ca_k2"] == "not shipped yet"


def test_only_held_out_patients(tmp_path):
    assert check_heldout(tmp_path / "x.npz", "SCD0000401") == "SCD0000401"
    with pytest.raises(InputError, match="not a held-out patient"):
        check_heldout(tmp_path / "sunnybrook_SCD0000101_sax_cine.npz", "SCD0000101")


@pytest.mark.parametrize("args,match", [
    (["--accelerations", "1"], "R values must be distinct integers >= 2"),
    (["--accelerations", "8", "8"], "distinct"),
    (["--series", "/nonexistent/s.npz"], "no such file"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, match):
    assert main(["report", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and not (tmp_path / "o").exists()


def test_training_patient_refused_before_work(tmp_path, capsys):
    series = write_series(tmp_path / "train.npz", patient="SCD0000101", slices=1)
    assert main(["report", "--out", str(tmp_path / "o"), "--series", str(series)]) == 2
    assert "not a held-out patient" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_significance_needs_enough_slices():
    assert min_pairs(0.05 / 4) == 8 and min_pairs(0.05) == 6  # 2 / 2^7 < 0.0125 <= 2 / 2^6
    assert "too small" in power_note(7, 6, 0.05) and "n >= 8" in power_note(2, 6, 0.05)
    assert power_note(8, 6, 0.05) is None and power_note(12, 4, 0.05) is None
    assert "no significance test" in power_note(1, 6, 0.05) and power_note(5, 0, 0.05) is None


def test_dagger_marks_significant_cells_and_a_missing_reference_is_said(report):
    from crunet.report import index

    res, _ = report
    r4 = res["accelerations"][4]
    flagged = {**res, "accelerations": {4: {**r4, "n": 9, "stats": [
        {"metric": "psnr", "method": "zf", "significant": True},
        {"metric": "ssim", "method": "zf", "significant": False}]}}}
    row = next(line for line in index(flagged).splitlines() if line.startswith("| zero-filled (`zf`) | ") and "±" in line)
    assert row.split(" | ")[1].endswith(" †") and "†" not in row.split(" | ")[2]
    assert "too small" not in index(flagged)
    without = {**res, "reference": None, "missing": {**res["missing"], "crunet_ca": "not shipped yet"}}
    assert "No significance test: the reference `crunet_ca` is not shipped yet." in index(without)


def test_cli_options_reach_the_report(tmp_path, monkeypatch, capsys):
    import crunet.report as R

    seen = []
    monkeypatch.setattr(R, "run_report", lambda cfg: seen.append(cfg) or {"missing": {"crnn": "not shipped yet"}})
    assert main(["report", "--out", str(tmp_path), "--accelerations", "8", "24", "--device", "cpu",
                 "--raw-dir", str(tmp_path / "raw")]) == 0
    cfg = seen[0]
    assert cfg.rs() == (8, 24) and cfg.device == "cpu" and not cfg.quick and cfg.series is None
    assert cfg.command() == f"crunet report --out {tmp_path} --accelerations 8 24 --device cpu --raw-dir {tmp_path / 'raw'}"
    assert "crnn: not shipped yet" in capsys.readouterr().out
    assert ReportConfig().rs() == (4, 8, 24) and ReportConfig(quick=True).rs() == (8,)
    assert ReportConfig(quick=True, accelerations=(24, 4)).rs() == (24,)


def test_default_series_is_the_whole_heldout_patient():
    """Every slice of the held-out patient ships, so the test of the report can reach its threshold."""
    patient, slices = read_series(demo_series(REPORT_SERIES))
    assert (patient, slices) == ("SCD0000401", 11) and check_heldout(demo_series(REPORT_SERIES), patient)
    assert min_pairs(0.05 / (len(LEARNED) - 1 + 3)) <= slices  # every other method against crunet_ca


def _fake_report(rows_by_r: dict) -> dict:
    """A report dict holding only what the claims read: per R, mean PSNR (and region PSNR) per method."""
    acc = {}
    for r, rows in rows_by_r.items():
        acc[r] = {"summary": [{"method": m, **{f"{k}_mean": v for k, v in vals.items()}} for m, vals in rows.items()]}
    return {"accelerations": acc}


def test_claims_say_agree_disagree_or_not_testable_with_the_numbers():
    from crunet.report_claims import claims

    def row(psnr, dyn, sta):
        return {"psnr": psnr, "dynamic_psnr": dyn, "static_psnr": sta}

    report = _fake_report({
        4: {"crunet": row(36.0, 30.0, 37.0), "crunet_conv": row(36.2, 30.3, 37.1), "crunet_ca": row(36.1, 30.5, 37.1),
            "promptmr": row(35.0, 29.0, 36.0)},
        24: {"crunet": row(31.0, 26.0, 32.0), "crunet_conv": row(31.4, 26.4, 32.2), "crunet_ca": row(31.6, 27.0, 32.1),
             "promptmr": row(31.7, 27.0, 32.0)},
    })
    got = {c: (ok, numbers) for c, ok, numbers in claims(report)}
    verdicts = [ok for ok, _ in got.values()]
    # CA < Conv at R = 4; no K = 2 / 3 models; no CRNN-MRI; PromptMR ahead of CA at R = 24
    assert verdicts == [True, False, True, True, None, None, None, False]
    assert got["CRUNet-MR w/ CA beats PromptMR (`promptmr`) (w/ CA minus PromptMR, PSNR)"][1] == \
        "R = 4: +1.10 dB, R = 24: -0.10 dB"
    assert got["CA fusion does at least as well as conv fusion (w/ CA minus w/ Conv, PSNR)"][1] == \
        "R = 4: -0.10 dB, R = 24: +0.20 dB"
    assert "R = 4: +0.10 dB, R = 24: +0.60 dB" in got[
        "The gain of the bank grows with the acceleration (w/ CA minus CRUNet-MR, lowest vs highest R)"][1]
    only_ca = _fake_report({8: {"crunet_ca": row(35.0, 30.0, 36.0)}})
    assert [ok for _, ok, _ in claims(only_ca)] == [None] * 8


def test_depth_claims_use_the_equally_trained_control_when_installed():
    """K = all against K = 2 / 3: the control trained as they were (crunet_ca_kall) when it is
    installed, else the shipped crunet_ca."""
    from crunet.report_claims import claims

    rows = {8: {"crunet_ca": {"psnr": 36.0}, "crunet_ca_kall": {"psnr": 34.0}, "crunet_ca_k2": {"psnr": 34.5},
                "crunet_ca_k3": {"psnr": 33.8}}}
    report = _fake_report(rows)
    report["bank_depths"] = {"crunet_ca": 0, "crunet_ca_kall": 0, "crunet_ca_k3": 3, "crunet_ca_k2": 2}
    got = {c: (ok, n) for c, ok, n in claims(report) if c.startswith("Fusing all")}
    assert got == {"Fusing all earlier cascades beats fusing the 3 most recent (`crunet_ca_kall` minus K = 3, PSNR)":
                   (True, "R = 8: +0.20 dB"),
                   "Fusing all earlier cascades beats fusing the 2 most recent (`crunet_ca_kall` minus K = 2, PSNR)":
                   (False, "R = 8: -0.50 dB")}
    del report["bank_depths"]["crunet_ca_kall"]
    got = [(ok, n) for c, ok, n in claims(report) if c.startswith("Fusing all") and "`crunet_ca` minus" in c]
    assert got == [(True, "R = 8: +2.20 dB"), (True, "R = 8: +1.50 dB")]


def test_depth_line_puts_the_shipped_model_beside_the_control():
    from crunet.report import depth_line

    both = {"crunet_ca": 0, "crunet_ca_kall": 0, "crunet_ca_k3": 3, "crunet_ca_k2": 2}
    assert depth_line(both) == (["crunet_ca_k2", "crunet_ca_k3", "crunet_ca_kall"], "crunet_ca")
    assert depth_line({"crunet_ca": 0, "crunet_ca_k2": 2}) == (["crunet_ca_k2", "crunet_ca"], None)
    assert depth_line({"crunet_ca_kall": 0, "crunet_ca_k2": 2}) == (["crunet_ca_k2", "crunet_ca_kall"], None)


def test_report_index_holds_the_claims(report):
    res, out = report
    md = (out / "README.md").read_text()
    section = md.split("## 5. The paper's claims on this data")[1].split("## Files")[0]
    assert section.count("| **") == 8
    assert "Feature aggregation improves CRUNet-MR" in section and "R = 4: " in section
    assert "needs CRUNet-MR w/ CA, K=2 (`crunet_ca_k2`)" in section


def test_cache_runs_only_what_is_new(tmp_path, monkeypatch, tiny_weights):
    """With --cache, a second report keeps the raw files and runs only newly installed weights;
    its tables and figures equal a report that ran everything."""
    import crunet.evaluate as E

    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_weights))
    series = write_series(tmp_path / "heldout.npz", slices=1)
    cfg = ReportConfig(out=str(tmp_path / "a"), quick=True, series=str(series), scan=TINY_SCAN, device="cpu",
                       cache=str(tmp_path / "cache"))
    run_report(cfg, log=lambda *_: None)
    raw = tmp_path / "cache" / "raw" / "heldout_r8.h5"
    mtime = raw.stat().st_mtime_ns
    calls = []
    real = E.reconstruct_slice
    monkeypatch.setattr(E, "reconstruct_slice", lambda s, c, maps=None: calls.append(c.method) or real(s, c, maps))
    save_bank_weights(tmp_path / "w" / "crunet_ca_k2", 2)
    monkeypatch.setenv(WEIGHTS_ENV, os.pathsep.join([str(tmp_path / "w"), str(tiny_weights)]))
    second = run_report(replace(cfg, out=str(tmp_path / "b")), log=lambda *_: None)
    assert calls == ["crunet_ca_k2"] and raw.stat().st_mtime_ns == mtime  # only the new weights ran; raw kept
    assert "crunet_ca_k2" in second["methods"] and (tmp_path / "b" / "r8" / "heldout_r8_slice0.png").is_file()
    fresh = run_report(replace(cfg, out=str(tmp_path / "c"), cache=None), log=lambda *_: None)
    for a, b in zip(second["accelerations"][8]["summary"], fresh["accelerations"][8]["summary"]):
        assert a["method"] == b["method"] and a["psnr_mean"] == pytest.approx(b["psnr_mean"], abs=1e-6)
    assert "--cache" not in second["command"]  # the same report with or without the cache
    calls.clear()
    run_report(replace(cfg, out=str(tmp_path / "d"), scan=replace(TINY_SCAN, snr=20.0)), log=lambda *_: None)
    assert raw.stat().st_mtime_ns != mtime and len(calls) > 1  # another acquisition: simulated and run again


def test_figures_for_the_central_two_slices():
    """Tables score every slice; figures are drawn for the two CMRxRecon ranks (the centre)."""
    from crunet.report import figure_slices

    assert figure_slices(11) == (4, 5) and figure_slices(2) == (0, 1) and figure_slices(1) == (0,)
    assert figure_slices(4) == (1, 2)


def test_claims_warn_when_the_models_were_trained_differently():
    from crunet.report_claims import training_caveat

    same = {"training": {"crunet": "wrap rows 8, 4,000 steps", "crunet_ca": "wrap rows 8, 4,000 steps"}}
    assert training_caveat(same) == []
    other = {"training": {"crunet": "wrap rows 0, 4,000 steps",
                          "crunet_ca": "wrap rows 8, 2,000 steps fine-tuning earlier weights"}}
    text = " ".join(training_caveat(other))
    assert "not trained alike" in text and "`crunet`: wrap rows 0, 4,000 steps" in text


def test_bank_claims_use_the_models_trained_alike_when_installed():
    """crunet_3k / crunet_conv_3k / crunet_ca_kall (one recipe) stand in for the shipped trio, whose
    training differs; the caveat then names only the baseline claims' group."""
    from crunet.report_claims import bank_models, claims, training_caveat

    rows = {8: {"crunet": {"psnr": 35.0}, "crunet_conv": {"psnr": 35.5}, "crunet_ca": {"psnr": 37.0},
                "crunet_3k": {"psnr": 34.0}, "crunet_conv_3k": {"psnr": 34.4}, "crunet_ca_kall": {"psnr": 34.2},
                "crnn": {"psnr": 35.0}}}
    report = _fake_report(rows)
    report["bank_depths"] = {"crunet_ca": 0, "crunet_ca_kall": 0}
    assert bank_models(report) == ("crunet_3k", "crunet_conv_3k", "crunet_ca_kall")
    got = {c: (ok, n) for c, ok, n in claims(report)}
    assert got["Feature aggregation improves CRUNet-MR (`crunet_ca_kall` minus `crunet_3k`, PSNR)"] == \
        (True, "R = 8: +0.20 dB")
    assert got["CA fusion does at least as well as conv fusion (`crunet_ca_kall` minus `crunet_conv_3k`, PSNR)"] == \
        (False, "R = 8: -0.20 dB")
    assert got["CRUNet-MR w/ CA beats CRNN-MRI (`crnn`) (w/ CA minus CRNN-MRI, PSNR)"] == (True, "R = 8: +2.00 dB")
    alike, long = "wrap rows 8, 3,000 steps", "wrap rows 8, 2,000 steps fine-tuning earlier weights"
    report["training"] = {"crunet_3k": alike, "crunet_conv_3k": alike, "crunet_ca_kall": alike,
                          "crunet_ca": long, "crnn": "wrap rows 0, 4,000 steps", "crunet": "wrap rows 0, 4,000 steps"}
    text = " ".join(training_caveat(report))
    assert "The models of the CRNN-MRI claim were not trained alike" in text
    assert "bank claims" not in text and "`crunet`:" not in text
    del rows[8]["crunet_3k"]  # without the no-bank partner: the shipped trio, and its mixed training is named
    report = {**_fake_report(rows), "training": report["training"], "bank_depths": report["bank_depths"]}
    assert bank_models(report) == ("crunet", "crunet_conv", "crunet_ca")
    assert "The models of the bank claims were not trained alike" in " ".join(training_caveat(report))


def test_baseline_claim_uses_the_baseline_trained_alike_when_installed():
    """crnn_3k (CRNN-MRI on crunet_ca_kall's recipe) is compared with crunet_ca_kall, not the shipped
    pair; PromptMR without such a partner keeps the shipped pair and its caveat."""
    from crunet.report_claims import baseline_pair, claims, training_caveat

    rows = {8: {"crunet_ca": {"psnr": 37.0}, "crnn": {"psnr": 35.0}, "promptmr": {"psnr": 34.0},
                "crunet_ca_kall": {"psnr": 34.2}, "crnn_3k": {"psnr": 34.5}}}
    report = _fake_report(rows)
    assert baseline_pair(report, "crnn") == ("crunet_ca_kall", "crnn_3k")
    assert baseline_pair(report, "promptmr") == ("crunet_ca", "promptmr")
    got = {c: (ok, n) for c, ok, n in claims(report)}
    assert got["CRUNet-MR w/ CA beats CRNN-MRI (`crnn`) (`crunet_ca_kall` minus `crnn_3k`, PSNR)"] == \
        (False, "R = 8: -0.30 dB")
    assert got["CRUNet-MR w/ CA beats PromptMR (`promptmr`) (w/ CA minus PromptMR, PSNR)"] == (True, "R = 8: +3.00 dB")
    alike = "wrap rows 8, 3,000 steps"
    report["training"] = {"crunet_ca_kall": alike, "crnn_3k": alike, "crunet_ca": "11,000 steps",
                          "promptmr": "4,000 steps", "crnn": "wrap rows 0, 4,000 steps"}
    text = " ".join(training_caveat(report))
    assert "The models of the PromptMR claim were not trained alike" in text
    assert "CRNN-MRI claim" not in text
    del rows[8]["crnn_3k"]
    assert baseline_pair(_fake_report(rows), "crnn") == ("crunet_ca", "crnn")


def test_raw_files_are_kept_for_the_same_series_in_another_checkout(tmp_path, monkeypatch):
    """The raw file's record names the series by its file name: the same series under another path
    (another checkout or worktree) keeps the cached raw file; another acquisition does not."""
    import recon.simulate.cine as cine
    from crunet.report import write_raw_files

    made = []

    def fake(scan, path):
        made.append(scan.source)
        Path(path).write_bytes(b"raw")
        return {"slices": 1, "phases": 2}

    monkeypatch.setattr(cine, "simulate_to_file", fake)
    scan = replace(TINY_SCAN, source=str(tmp_path / "a" / "heldout.npz"))
    (tmp_path / "raw").mkdir()
    write_raw_files(tmp_path / "raw", scan, (8,), log=lambda *_: None)
    write_raw_files(tmp_path / "raw", replace(scan, source=str(tmp_path / "b" / "heldout.npz")), (8,),
                    log=lambda *_: None)
    assert len(made) == 1
    write_raw_files(tmp_path / "raw", replace(scan, snr=scan.snr * 2), (8,), log=lambda *_: None)
    write_raw_files(tmp_path / "raw", replace(scan, source=str(tmp_path / "other.npz")), (8,), log=lambda *_: None)
    assert len(made) == 3
