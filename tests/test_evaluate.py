"""crunet evaluate and crunet recon-file on a simulated SAX slice at R=8 (learned methods: tiny stand-ins)."""

import csv
import shutil

import h5py
import numpy as np
import pytest

from crunet.cli import main
from recon.io import flags as F
from recon.io.raw import read_acquisitions, write_raw
from recon.simulate.cine import SimulationConfig, simulate_to_file
from tests.conftest import TINY_CA_DESCRIPTION


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "sax_r8.h5"
    simulate_to_file(SimulationConfig(n_slices=2, n_phases=8, n_coils=8, matrix=(80, 80), acceleration=8,
                                      seed=1), path)
    return path


def test_evaluate_prints_ordering_and_writes_outputs(raw, tmp_path, capsys):
    """Default: zf sense lps and the learned default crunet_ca, side by side, tested against crunet_ca."""
    out = tmp_path / "eval"
    assert main(["evaluate", str(raw), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    with open(out / "table.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["zf", "sense", "lps", "crunet_ca"]
    psnr = {m: float(r["psnr_mean"]) for m, r in rows.items()}
    assert psnr["zf"] < min(psnr["sense"], psnr["lps"])  # SENSE vs L+S depends on the simulated data
    labels = {"zf": "zero-filled", "sense": "SENSE", "lps": "L+S", "crunet_ca": "crunet_ca"}
    ordering = " < ".join(labels[m] for m in sorted(psnr, key=psnr.get))
    assert f"PSNR ordering (low -> high): {ordering}" in printed
    for name in ("results.csv", "table.md", "stats.csv", "sax_r8_slice0.png", "sax_r8_slice1.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    assert "| L+S |" in table and "| crunet_ca |" in table and "DISTS" in table and "Bonferroni" in table
    with open(out / "results.csv") as f:
        res = list(csv.DictReader(f))
    assert len(res) == 8 and all(float(r["dynamic_psnr"]) > 0 and float(r["seconds"]) > 0 for r in res)
    with open(out / "stats.csv") as f:
        assert {r["reference"] for r in csv.DictReader(f)} == {"crunet_ca"}


def test_evaluate_several_weights_through_the_pipeline(raw, tmp_path, tiny_weights, monkeypatch, capsys):
    """Named weights and weights directories side by side, every run through reconstruct_slice."""
    import crunet.evaluate as E

    calls = []
    real = E.reconstruct_slice

    def counting(s, cfg, maps=None):
        calls.append((cfg.method, maps is None))
        return real(s, cfg, maps=maps)

    monkeypatch.setattr(E, "reconstruct_slice", counting)
    out = tmp_path / "eval"
    assert main(["evaluate", str(raw), "--out", str(out), "--no-figures", "--device", "cpu",
                 "--methods", "zf", "crunet_ca", "crunet", "crnn", "--weights", str(tiny_weights / "crunet_conv")]) == 0
    with open(out / "results.csv") as f:
        res = list(csv.DictReader(f))
    assert [r["method"] for r in res[:5]] == ["zf", "crunet_ca", "crunet", "crnn", "crunet_conv"]
    assert len(res) == 10 and all(float(r["seconds"]) > 0 for r in res)
    # one map estimate per slice (the first method), shared by the other four
    assert [fresh for _, fresh in calls] == [True, False, False, False, False] * 2
    assert [m for m, _ in calls[:5]] == ["zf", "crunet_ca", "crunet", "crnn", "model"]
    assert "crunet_conv" in capsys.readouterr().out


def test_evaluate_refuses_missing_weights_before_work(raw, tmp_path, monkeypatch, capsys):
    import recon.weights as W

    monkeypatch.setattr(W, "builtin_weights_dirs", lambda: [])
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    assert main(["evaluate", str(raw), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'crunet_ca' not found" in err and "--method sense" in err
    assert not (tmp_path / "e").exists()


def test_evaluate_needs_ground_truth(raw, tmp_path, capsys):
    _, xml, headers, data = read_acquisitions(raw)
    bare = write_raw(tmp_path / "no_gt.h5", xml.decode(), headers, data)
    assert main(["evaluate", str(bare), "--out", str(tmp_path / "e"), "--methods", "zf"]) == 2
    assert "ground truth" in capsys.readouterr().err


def test_recon_file_writes_images_and_survives_a_bad_slice(raw, tmp_path, capsys):
    out = tmp_path / "images.h5"
    assert main(["recon-file", str(raw), str(out), "--method", "zf", "--series", "3"]) == 0
    with h5py.File(out) as f:
        assert f["dataset/image_3/data"].shape == (16, 1, 1, 80, 80)
    # slice 0 without calibration lines: reported, slice 1 still written, exit status 1
    _, xml, headers, data = read_acquisitions(raw)
    headers["flags"][headers["idx"]["slice"] == 0] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    bad = write_raw(tmp_path / "bad.h5", xml.decode(), headers, data)
    out2 = tmp_path / "images2.h5"
    assert main(["recon-file", str(bad), str(out2), "--method", "zf"]) == 1
    err = capsys.readouterr().err
    assert "slice 0" in err and "calibration" in err
    with h5py.File(out2) as f:
        hdr = f["dataset/image_1/header"][()]
        assert np.all(hdr["slice"] == 1) and len(hdr) == 8


def test_recon_file_default_is_the_learned_model(raw, tmp_path, tiny_weights, capsys):
    import ismrmrd

    out = tmp_path / "learned.h5"
    assert main(["recon-file", str(raw), str(out), "--device", "cpu"]) == 0
    assert "crunet_ca" in capsys.readouterr().out
    ds = ismrmrd.Dataset(str(out), "dataset", create_if_needed=False)
    comment = ismrmrd.Meta.deserialize(ds.read_image("image_1", 0).attribute_string)["ImageComment"]
    ds.close()
    assert comment.startswith(f"crunet crunet_ca (refine=motion): {TINY_CA_DESCRIPTION} sha256:")
    out2 = tmp_path / "dir.h5"
    assert main(["recon-file", str(raw), str(out2), "--weights", str(tiny_weights / "crnn"), "--series", "5"]) == 0
    with h5py.File(out2) as f:
        assert f["dataset/image_5/data"].shape == (16, 1, 1, 80, 80)
    assert main(["recon-file", str(raw), str(out2), "--weights", "crnn", "--method", "sense"]) == 2


def test_recon_file_missing_default_weights_one_line(raw, tmp_path, monkeypatch, capsys):
    import recon.weights as W

    monkeypatch.setattr(W, "builtin_weights_dirs", lambda: [])
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    assert main(["recon-file", str(raw), str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crunet recon-file: error: reconstruction settings: method 'crunet_ca': trained weights "
                          "'crunet_ca' not found")
    assert err.count("\n") == 1 and "--method sense" in err and "Traceback" not in err


def test_evaluate_reuse_runs_only_what_is_not_stored(raw, tmp_path, tiny_weights, monkeypatch):
    """With reuse, a second run with one more method reconstructs only that method; rows
    of other weights (another hash) or other options are not taken for it."""
    import crunet.evaluate as E

    calls = []
    real = E.reconstruct_slice

    def counting(s, cfg, maps=None):
        calls.append((cfg.method, dict(cfg.options)))
        return real(s, cfg, maps=maps)

    monkeypatch.setattr(E, "reconstruct_slice", counting)
    out = tmp_path / "eval"
    cfg = E.EvalConfig(methods=("zf", "crunet_ca"), figures=False, device="cpu", reuse=True)
    first = E.evaluate([raw], out, cfg, log=lambda *_: None)
    assert [m for m, _ in calls] == ["zf", "crunet_ca"] * 2
    calls.clear()
    second = E.evaluate([raw], out, E.EvalConfig(methods=("zf", "crunet_ca", "sense:lam=0"), figures=False,
                                                 device="cpu", reuse=True), log=lambda *_: None)
    assert [m for m, _ in calls] == ["sense"] * 2 and calls[0][1] == {"lam": 0.0}
    assert [r["psnr"] for r in second["rows"] if r["method"] != "sense:lam=0"] == [r["psnr"] for r in first["rows"]]
    calls.clear()
    E.evaluate([raw], out, E.EvalConfig(methods=("sense:lam=0.01",), figures=False, device="cpu", reuse=True),
               log=lambda *_: None)
    assert [m for m, _ in calls] == ["sense"] * 2
    calls.clear()
    E.evaluate([raw], out, E.EvalConfig(methods=("zf",), weights=(str(tiny_weights / "crunet_conv"),),
                                        figures=False, device="cpu", reuse=True), log=lambda *_: None)
    assert [m for m, _ in calls] == ["model"] * 2  # other weights: run; zf: stored
    calls.clear()
    import recon.baselines.sense as S
    import recon.methods as M

    changed = dict(M.METHODS, sense=lambda p, lam="auto", n_iter=S.DEFAULT_ITERATIONS + 1, tol=0.0, progress=None:
                   S.sense(p, lam=lam, n_iter=n_iter, tol=tol, progress=progress))
    monkeypatch.setattr(M, "METHODS", changed)  # a new default of the method: its stored rows are stale
    E.evaluate([raw], out, E.EvalConfig(methods=("zf", "sense:lam=0"), figures=False, device="cpu", reuse=True),
               log=lambda *_: None)
    assert [m for m, _ in calls] == ["sense"] * 2


def test_rows_carry_the_challenge_centre_scores_and_old_rows_are_recomputed(raw, tmp_path, monkeypatch):
    """Every row holds centre_psnr / centre_ssim (the CMRxRecon centre crop) beside the full-FOV
    scores; they equal the cropped run's main scores; a stored row without them runs again."""
    import json

    import crunet.evaluate as E

    full = E.evaluate([raw], tmp_path / "full", E.EvalConfig(methods=("zf",), figures=False, device="cpu",
                                                             reuse=True), log=lambda *_: None)
    cropped = E.evaluate([raw], tmp_path / "crop", E.EvalConfig(methods=("zf",), figures=False, device="cpu",
                                                                crop=True), log=lambda *_: None)
    for a, b in zip(full["rows"], cropped["rows"]):
        assert a["centre_psnr"] == pytest.approx(b["psnr"]) and a["centre_ssim"] == pytest.approx(b["ssim"])
        assert a["centre_psnr"] != pytest.approx(a["psnr"])
    assert "PSNR centre" in (tmp_path / "full" / "table.md").read_text()
    rows_file = tmp_path / "full" / E.ROWS
    old = [json.loads(line) for line in rows_file.read_text().splitlines()]
    for entry in old:  # rows written before the centre scores existed
        del entry["row"]["centre_psnr"], entry["row"]["centre_ssim"], entry["row"]["centre_crop"]
    rows_file.write_text("".join(json.dumps(e) + "\n" for e in old))
    calls = []
    real = E.reconstruct_slice
    monkeypatch.setattr(E, "reconstruct_slice", lambda s, cfg, maps=None: calls.append(1) or real(s, cfg, maps))
    again = E.evaluate([raw], tmp_path / "full", E.EvalConfig(methods=("zf",), figures=False, device="cpu",
                                                              reuse=True), log=lambda *_: None)
    assert len(calls) == 2 and all("centre_psnr" in r for r in again["rows"])
    assert all(r["centre_crop"] == "40x53" for r in again["rows"])  # 80 x 80: half of y, two thirds of x


def test_cli_cache_reuses_reconstructions_for_figures(raw, tmp_path, monkeypatch, capsys):
    """crunet evaluate --cache: the second run reconstructs nothing yet writes the same table and figures."""
    import crunet.evaluate as E

    args = ["evaluate", str(raw), "--methods", "zf", "sense", "--device", "cpu", "--cache", str(tmp_path / "c")]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    monkeypatch.setattr(E, "reconstruct_slice", lambda *a, **k: pytest.fail("reconstructed again"))
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    for name in ("table.csv", "sax_r8_slice0.png", "sax_r8_slice1.png"):
        assert (tmp_path / "b" / name).is_file(), name
    tables = [(tmp_path / d / "table.csv").read_text().splitlines() for d in "ab"]
    assert [line.split(",")[:3] for line in tables[0]] == [line.split(",")[:3] for line in tables[1]]


def test_cached_rows_scored_on_another_crop_are_rescored_not_reconstructed(raw, tmp_path, monkeypatch):
    """A cached row whose centre scores used another crop is rescored from its cached image."""
    import json

    import crunet.evaluate as E

    cfg = E.EvalConfig(methods=("zf",), figures=False, device="cpu", cache=str(tmp_path / "c"))
    first = E.evaluate([raw], tmp_path / "a", cfg, log=lambda *_: None)
    rows_file = tmp_path / "c" / E.ROWS
    old = [json.loads(line) for line in rows_file.read_text().splitlines()]
    for entry in old:  # as if scored with an older crop rule
        entry["row"].update(centre_crop="40x27", centre_psnr=0.0)
    rows_file.write_text("".join(json.dumps(e) + "\n" for e in old))
    monkeypatch.setattr(E, "reconstruct_slice", lambda *a, **k: pytest.fail("reconstructed again"))
    logged = []
    again = E.evaluate([raw], tmp_path / "b", cfg, log=logged.append)
    for a, b in zip(first["rows"], again["rows"]):
        assert b["centre_crop"] == "40x53" and b["centre_psnr"] == pytest.approx(a["centre_psnr"], abs=1e-4)
        assert b["seconds"] == a["seconds"]
    assert sum("rescored" in line for line in logged) == 2


def test_figure_slices_limit_the_figures_not_the_table(raw, tmp_path):
    import crunet.evaluate as E

    res = E.evaluate([raw], tmp_path, E.EvalConfig(methods=("zf",), device="cpu", figure_slices=(1,)),
                     log=lambda *_: None)
    assert [p.rsplit("/", 1)[-1] for p in res["figures"]] == ["sax_r8_slice1.png"]
    assert not (tmp_path / "sax_r8_slice0.png").exists() and len(res["rows"]) == 2


def test_row_keys_keep_rows_made_before_an_off_by_default_setting():
    """A setting that is off by default (virtual_coils = 0) does not enter the key, so rows stored
    before it existed are found; set, it does. (coil_second_set is on by default and changes
    every method's maps: it enters the key, so rows made with the first set alone are recomputed.)"""
    from dataclasses import replace

    from crunet.evaluate import _config_key
    from recon.pipeline import ReconConfig

    before = ("ReconConfig(method='zf', coil_method='espirit', coil_second_set=True, device='auto', "
              "image_type='magnitude', series_index=0, options={})")
    assert _config_key(ReconConfig(method="zf", series_index=0)) == before
    assert _config_key(replace(ReconConfig(method="zf", series_index=0), virtual_coils=8)) == \
        before[:-1] + ", virtual_coils=8)"


def test_row_keys_tell_weights_with_a_parameter_free_setting_apart(raw, tmp_path):
    """Two weights folders with the same file, one with ``mean_consistency`` on in its config: their
    rows are keyed apart; the one without keys by the file's hash alone (as rows stored before it)."""
    from dataclasses import replace

    from crunet.evaluate import _row_key
    from recon.models.config import CRUNetConfig, ModelConfig
    from recon.models.registry import build_model
    from recon.pipeline import ReconConfig
    from recon.config import dump_yaml
    from recon.weights import CONFIG_FILE, save_weights, weights_info, write_manifest

    cfg = ModelConfig(crunet=CRUNetConfig(channels=2, cascades=1))
    model = build_model(cfg)
    save_weights(model, cfg, tmp_path / "plain")
    shutil.copytree(tmp_path / "plain", tmp_path / "mc")  # the same file; only config.yaml differs
    dump_yaml(replace(cfg, crunet=replace(cfg.crunet, mean_consistency=True)), tmp_path / "mc" / CONFIG_FILE)
    write_manifest(tmp_path / "mc", sum(p.numel() for p in model.parameters()), "crunet", "float32")
    info = weights_info(tmp_path / "plain")
    assert info.sha256 == weights_info(tmp_path / "mc").sha256
    keys = {name: _row_key(raw, 0, ReconConfig(method="model", options={"weights": str(tmp_path / name)}), None)
            for name in ("plain", "mc")}
    assert keys["plain"] != keys["mc"]
    assert f'"{info.sha256}"' in keys["plain"] and f'"{info.sha256} mean_consistency"' in keys["mc"]


def test_evaluate_scores_the_ismrmrd_tool_files(shepp_logan_file, tmp_path, capsys):
    """``ismrmrd_generate_cartesian_shepp_logan`` files have no /dataset/ground_truth: evaluate scores
    them against the tool's noise-free phantom and maps (recon.io.raw.read_ground_truth)."""
    out = tmp_path / "eval"
    assert main(["evaluate", str(shepp_logan_file), "--out", str(out), "--methods", "zf", "lps",
                 "--no-figures", "--device", "cpu"]) == 0
    with open(out / "table.csv") as f:
        psnr = {r["method"]: float(r["psnr_mean"]) for r in csv.DictReader(f)}
    assert set(psnr) == {"zf", "lps"} and 10 < psnr["zf"] < psnr["lps"] - 5  # measured 15.3 / 23.5 dB
