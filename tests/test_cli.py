"""The crunet command: subcommands, help, exit codes, errors without tracebacks."""

import json
import subprocess
import sys

import pytest

from crunet.cli import COMMANDS, main
from recon.errors import InputError
from tests.conftest import TINY_CA_DESCRIPTION


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert "usage: crunet " + name in capsys.readouterr().out


def test_simulate_then_inspect(tmp_path, capsys):
    out = tmp_path / "raw.h5"
    assert main(["simulate", str(out), "--phases", "3", "--coils", "2", "--matrix", "40", "32",
                 "-R", "4", "--acs", "8", "--slices", "2"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["slices"]) == 2
    s = info["slices"][0]
    assert (s["frames"], s["coils"], s["acceleration"], s["n_acs"]) == (3, 2, 4, 8)
    assert info["encoded_matrix"] == [64, 40, 1]


def test_bad_file_exit_code_and_message(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x00" * 100)
    r = subprocess.run([sys.executable, "-m", "crunet", "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "not an HDF5 file" in r.stderr and "Traceback" not in r.stderr


def test_bad_argument_value(capsys):
    assert main(["simulate", "/tmp/never.h5", "--view", "sax", "--phases", "0"]) == 2
    assert "n_phases" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "simulate" in capsys.readouterr().out


def _option(command: str, flag: str):
    from crunet.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if flag in a.option_strings)


@pytest.mark.parametrize("command,flag", [("recon-file", "--method"), ("recon", "--method"),
                                          ("evaluate", "--methods"), ("bench", "--methods")])
def test_method_options_take_weights_names(command, flag):
    action = _option(command, flag)
    assert action.choices is None and "crunet_ca" in action.help


def test_recon_method_takes_options_like_evaluate():
    """``--method name:key=value`` is parsed as evaluate and bench parse it (one parser)."""
    from crunet.cli.recon_file import method_and_options

    assert method_and_options("sense:lam=0.01", None, "crunet_ca") == ("sense", {"lam": 0.01})
    assert method_and_options("crunet_ca:precision=fp32", None, "zf") == ("crunet_ca", {"precision": "fp32"})
    assert method_and_options(None, None, "crunet_ca") == ("crunet_ca", {})
    assert method_and_options(None, "w", "crunet_ca") == ("model", {"weights": "w"})
    assert method_and_options("model:precision=bf16", "w", "crunet_ca") == ("model", {"precision": "bf16",
                                                                                   "weights": "w"})
    with pytest.raises(InputError, match="does not go with --method sense"):
        method_and_options("sense", "w", "crunet_ca")


def test_bench_learned_and_classical_side_by_side(tmp_path, tiny_weights, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "methods", "--sizes", "32", "--coils", "2", "--repeats", "2", "--device", "cpu",
                 "--methods", "zf", "crunet_ca", "crnn", "--weights", str(tiny_weights / "crunet_conv"),
                 "--out", str(out)]) == 0
    assert "crunet_ca" in capsys.readouterr().out
    r = json.loads(out.read_text())["methods"][0]
    assert list(r["methods"]) == ["zf", "crunet_ca", "crnn", "bart_tv", "crunet_conv"] and r["device"] == "cpu"
    assert (r["source"], r["coil_family"], r["snr"]) == ("real", "dipole", 50.0)  # held-out anatomy and acquisition
    assert r["bart"] == "pics timed"
    for label, v in r["methods"].items():
        assert v["seconds"] > 0 and len(v["all_seconds"]) == 1 and v["ratio_to_fastest"] >= 1, label
    assert r["methods"]["crunet_ca"]["model"].startswith("crunet crunet_ca (refine=motion): CRUNet-MR 4ch x2 fusion ca")
    assert "model" not in r["methods"]["zf"]
    assert r["methods"]["bart_tv"]["psnr"] > r["methods"]["zf"]["psnr"]  # BART's CS does reconstruct


def test_bench_on_a_shifted_mask_compares_the_temporal_mean_step(tmp_path, tiny_weights, capsys):
    """``--shifted-mask``: the slice's lattice moves from frame to frame (recorded), and the default
    methods time crunet_ca with and without the temporal-mean step in the same run."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "methods", "--sizes", "32", "--coils", "2", "--repeats", "2", "--device", "cpu",
                 "--shifted-mask", "--source", "phantom", "--out", str(out)]) == 0
    r = json.loads(out.read_text())["methods"][0]
    assert r["shifted_mask"] is True and r["source"] == "phantom"
    on, off = r["methods"]["crunet_ca"], r["methods"]["crunet_ca:mean_consistency=off"]
    assert on["psnr"] != off["psnr"]  # the step acts on a moving lattice
    assert "crunet_ca:refine=off" in r["methods"]  # the default refinement against the network alone, one run


def test_bench_server_concurrent_clients_lose_nothing(tmp_path, tiny_weights, capsys):
    """crunet bench --what server (crunet serve in its own process): every client gets every image;
    slices paced as a scanner sends them have their latency measured; the server's memory is sampled."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "server", "--sizes", "32", "--coils", "2", "--clients", "1", "3",
                 "--slices", "2", "--pace", "0.002", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "server 3 client(s)" in printed and "one slice at a time (--parallel-slices 1)" in printed
    r = json.loads(out.read_text())
    assert r["load"] and r["server"]["chain"] == "crunet"
    one, three = r["server"]["runs"]
    assert (one["clients"], three["clients"], one["throughput_ratio"]) == (1, 3, 1.0)
    for row in (one, three):
        assert row["images"] == row["images_expected"] == row["clients"] * 2 * 12 and row["texts"] == []
        assert len(row["slice_latency_s"]) == row["clients"] * 2 and min(row["slice_latency_s"]) > 0
        assert len(row["before_next_slice"]) == row["clients"] and row["rss_mb_peak"] >= r["server"]["rss_mb_idle"] > 0
    single = r["server"]["one_at_a_time"]  # the same replay, one slice of the connection at a time
    assert single["clients"] == 1 and single["images"] == single["images_expected"] == 2 * 12
    assert r["server"]["side_by_side_gain"] == one["slices_per_s"] / single["slices_per_s"]
    assert main(["bench", "--what", "server", "--sizes", "32", "--coils", "2", "--clients", "2", "--slices", "1",
                 "--pace", "0.002", "--out", str(out)]) == 0  # no 1-client run: no ratio to print
    assert "server 2 client(s):" in capsys.readouterr().out


def test_bench_network_variants_and_chain(tmp_path, tiny_weights, capsys, monkeypatch):
    """crunet bench --what network: each arithmetic timed against fp32 on the same input (TF32 n/a on a
    CPU), a model config with random weights or installed weights, and the whole chain with maps."""
    import crunet.bench.arithmetic

    monkeypatch.setattr(crunet.bench.arithmetic, "emulated_bf16_note", lambda device: None)  # bf16 timed anyway
    cfg = tmp_path / "model.yaml"
    cfg.write_text("model:\n  name: crunet\n  crunet: {channels: 4, cascades: 2, fusion: ca, bank_projection: 1x1}\n")
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "network", "--sizes", "24", "--coils", "2", "--frames", "3", "--repeats", "2",
                 "--variants", "fp32", "tf32", "bf16", "--model-config", str(cfg), "--device", "cpu",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tf32     n/a: TF32 is a CUDA tensor-core mode" in printed and "chain 24x24" in printed
    r = json.loads(out.read_text())["network"][0]
    assert r["model"]["crunet"]["bank_projection"] == "1x1" and r["device"] == "cpu"
    assert r["variants"]["fp32"]["ratio_to_fp32"] == 1.0 and r["variants"]["bf16"]["seconds"] > 0
    fp32 = r["variants"]["fp32"]  # how near the machine's limit: network GFLOP/s over the matmul's
    assert r["gflop_per_forward"] > 0 and r["matmul_gflops"]["fp32"] > 0
    assert fp32["gflops"] * fp32["seconds"] == pytest.approx(r["gflop_per_forward"])
    assert fp32["fraction_of_matmul"] == fp32["fraction_of_fp32_matmul"] == fp32["gflops"] / r["matmul_gflops"]["fp32"]
    assert "GFLOP per forward; matmul GFLOP/s fp32" in printed and "of fp32 matmul)" in printed
    assert r["chain"]["seconds"] >= r["chain"]["seconds_method"] > 0
    assert main(["bench", "--what", "network", "--sizes", "24", "--coils", "2", "--frames", "3", "--repeats", "1",
                 "--variants", "fp32", "--weights", "crunet", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["network"][0]["model"]["crunet"]["fusion"] == "none"


def test_bench_network_skips_emulated_bf16(tmp_path, capsys, monkeypatch):
    """Where bf16 is not native the network bench reports its bf16 variant n/a instead of timing the
    emulation (15x fp32's time: hours at the paper size), like the training bench."""
    import recon.machine

    monkeypatch.setattr(recon.machine, "native_bf16", lambda device: False)
    cfg = tmp_path / "model.yaml"
    cfg.write_text("model:\n  name: crunet\n  crunet: {channels: 4, cascades: 2}\n")
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "network", "--sizes", "24", "--coils", "2", "--frames", "3", "--repeats", "1",
                 "--variants", "fp32", "bf16", "--model-config", str(cfg), "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "bf16     n/a: bf16 is emulated on this CPU" in capsys.readouterr().out
    r = json.loads(out.read_text())["network"][0]["variants"]
    assert r["bf16"] == {"seconds": None, "note": "n/a: bf16 is emulated on this CPU"} and r["fp32"]["seconds"] > 0


def test_bench_bank_varies_only_the_bank(tmp_path, tiny_weights, capsys):
    """crunet bench --what bank: the installed crunet_ca's model without a bank, with conv fusion,
    with CA and a 3x3, 1x1 or no projection, all at its size and wrap, timed against the bank-free one."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "bank", "--sizes", "24", "--coils", "2", "--repeats", "2", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "bank 24x24 (CRUNet-MR 4ch x2" in capsys.readouterr().out
    r = json.loads(out.read_text())["bank"][0]
    assert list(r["variants"]) == ["none", "conv", "ca", "ca_1x1", "ca_sum"] and r["frames"] == 12
    assert r["variants"]["none"]["ratio_to_none"] == 1.0
    assert all(v["seconds"] > 0 and len(v["all_seconds"]) == 2 for v in r["variants"].values())
    assert main(["bench", "--what", "bank", "--sizes", "24", "--weights", str(tiny_weights / "crnn"),
                 "--out", str(out)]) == 2
    assert "needs a CRUNet-MR model config, got 'crnn'" in capsys.readouterr().err


def test_bench_coils_prints_seconds(tmp_path, capsys):
    """crunet bench --what coils: ours, BART (or why not) and the merged second set, each in seconds."""
    import re

    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "coils", "--sizes", "32", "--coils", "4", "--repeats", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("coil maps 32x32"))
    assert re.fullmatch(r"coil maps 32x32: ours \d\.\d{3} s, bart (\d+\.\d{3} s|not installed), "
                        r"second set merged (\d+\.\d{3} s|not run .*)", line), line
    r = json.loads(out.read_text())["coils"][0]
    assert r["ours"]["seconds"] > 0 and r["shape"] == [32, 32]


def test_bench_refuses_unknown_method_before_work(tmp_path, capsys):
    assert main(["bench", "--what", "methods", "--methods", "zf", "nonsense", "--out", str(tmp_path / "b.json")]) == 2
    assert "unknown method 'nonsense'" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("args, message", [(["--repeats", "0"], "--repeats: must be at least 1, got 0"),
                                           (["--frames", "two"], "--frames: must be a whole number"),
                                           (["--clients", "1", "-4"], "--clients: must be at least 1, got -4"),
                                           (["--sizes", "0x128"], "--sizes: size must be positive")])
def test_bench_refuses_counts_that_would_time_nothing(tmp_path, capsys, args, message):
    """A count of 0 had the bench print nan seconds; it is refused before any work."""
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--what", "train", *args, "--out", str(tmp_path / "b.json")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_serve_and_gadget_report_the_default_weights(tiny_weights):
    from recon.weights import weights_status

    assert weights_status().startswith(f"crunet_ca: {TINY_CA_DESCRIPTION} sha256:")
    assert weights_status("nope").startswith("nope: not usable: trained weights 'nope' not found")


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "raw.h5"
    assert main(["simulate", str(path), "--phases", "3", "--coils", "2", "--matrix", "40", "32",
                 "-R", "4", "--acs", "8", "--slices", "2", "--seed", "3"]) == 0
    return path


def test_recon_file_nothing_written_is_exit_2(small_raw, tmp_path, capsys):
    from recon.io import flags as F
    from recon.io.raw import read_acquisitions, write_raw

    _, xml, headers, data = read_acquisitions(small_raw)
    headers["flags"] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    bad = write_raw(tmp_path / "bad.h5", xml.decode(), headers, data)
    capsys.readouterr()
    assert main(["recon-file", str(bad), str(tmp_path / "out.h5"), "--method", "zf"]) == 2
    err = capsys.readouterr().err
    assert "no calibration lines" in err and "wrote" not in err and not (tmp_path / "out.h5").exists()


def test_recon_file_eigen_solver_failure_is_a_slice_error(small_raw, tmp_path, capsys, monkeypatch):
    import torch

    def failing(*_a, **_k):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge (error code: 3)")

    monkeypatch.setattr(torch.linalg, "eigh", failing)
    capsys.readouterr()
    assert main(["recon-file", str(small_raw), str(tmp_path / "out.h5"), "--method", "zf"]) == 2
    err = capsys.readouterr().err
    assert "slice 0: error: coil maps of slice 0: ESPIRiT eigen-solver failed" in err
    assert "LinAlgError" in err and "Traceback" not in err and "no images written" in err


@pytest.mark.parametrize("args,match", [
    (["--weights", "/nonexistent/weights"], "weights directory not found"),
    (["--method", "not_installed_weights"], "unknown method 'not_installed_weights'"),
    (["--series", "70000"], "series_index must be an integer in 0..65535"),
    (["--series", "-1"], "series_index must be an integer in 0..65535"),
])
def test_recon_file_checks_arguments_before_reading(tmp_path, capsys, args, match):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not read before the arguments are checked")
    assert main(["recon-file", str(garbage), str(tmp_path / "out.h5"), *args]) == 2
    err = capsys.readouterr().err
    assert match in err and "not an HDF5" not in err


def test_recon_file_broken_weights_found_up_front(tmp_path, tiny_weights, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_weights / "crunet_ca", broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"x")
    assert main(["recon-file", str(garbage), str(tmp_path / "out.h5"), "--weights", str(broken)]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_recon_file_cuda_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"x")
    assert main(["recon-file", str(garbage), str(tmp_path / "o.h5"), "--method", "zf", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_recon_file_output_checks(small_raw, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("keep me")
    for output, match in ((small_raw, "the output is the input file"), (tmp_path, "is a directory"),
                          (text, "not an HDF5 file; refusing"), (tmp_path / "no" / "o.h5", "does not exist")):
        assert main(["recon-file", str(small_raw), str(output), "--method", "zf"]) == 2
        assert match in capsys.readouterr().err
    assert text.read_text() == "keep me"


def test_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import crunet.cli.inspect as inspect_cmd

    def explode(_args):
        raise MemoryError()

    monkeypatch.setattr(inspect_cmd, "run", explode)
    assert main(["inspect", str(tmp_path / "x.h5")]) == 2
    assert capsys.readouterr().err.strip() == ("crunet inspect: error: out of memory (the input may declare "
                                               "sizes this machine cannot hold)")


def test_threads_option_is_checked_before_work(tmp_path, capsys):
    assert main(["recon-file", str(tmp_path / "missing.h5"), str(tmp_path / "o.h5"), "--threads", "zero"]) == 2
    assert "threads must be 'auto' or a count >= 1, got 'zero'" in capsys.readouterr().err


def test_recon_file_first_set_only_is_named_in_the_image_comment(small_raw, tmp_path):
    from recon.io.images import read_images

    out = tmp_path / "first.h5"
    assert main(["recon-file", str(small_raw), str(out), "--method", "zf", "--first-set-only"]) == 0
    (_, _, metas), = read_images(out).values()
    assert "espirit maps (first set only)" in metas[0]
    assert main(["recon-file", str(small_raw), str(tmp_path / "merged.h5"), "--method", "zf"]) == 0
    (_, _, metas), = read_images(tmp_path / "merged.h5").values()
    assert "espirit maps" in metas[0] and "first set only" not in metas[0]


def test_bench_methods_times_after_an_untimed_round(monkeypatch):
    """The first round warms up (a learned method's first call loads its model): with ``repeats`` 2
    each method runs three times and two are timed."""
    import recon.pipeline as P
    from crunet.bench.methods import bench_methods

    calls = []
    real = P.reconstruct_slice

    def counted(s, rc, maps=None):
        calls.append(rc.method)
        return real(s, rc, maps=maps)

    monkeypatch.setattr(P, "reconstruct_slice", counted)
    r = bench_methods((32, 32), n_phases=3, n_coils=2, methods=("zf", "sense"), repeats=2, device="cpu", bart=False)
    assert calls == ["zf", "sense"] * 3
    assert all(len(v["all_seconds"]) == 2 for v in r["methods"].values())


def test_bench_times_the_normal_operator_forms(tmp_path, capsys):
    """``--what operators``: A^H A with FFTs, the DFT's rows and per-column matrices, and 10 CG steps
    with each, as ratios to the FFT form in one run; the forms agree to rounding."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "operators", "--sizes", "32", "--coils", "4", "--repeats", "1",
                 "--out", str(out)]) == 0
    assert "normal operator 32x32" in capsys.readouterr().out
    (r,) = json.loads(out.read_text())["operators"]
    assert list(r["forms"]) == ["fft", "rows", "columns"] and r["shape"] == [32, 32]
    assert r["forms"]["fft"]["ratio_to_fft"] == 1.0
    for form in ("rows", "columns"):
        row = r["forms"][form]
        assert row["seconds"] > 0 and row["cg_seconds"] > 0 and row["build_s"] > 0 and row["max_rel_diff"] < 1e-5
    assert r["shifted_mask"] is False and r["chosen"] == "columns"  # one matrix set serves all 12 frames


@pytest.mark.parametrize("shifted, chosen", [(False, "columns"), (True, "rows")])
def test_bench_operators_reports_the_form_chosen_for_fixed_and_shifted_masks(tmp_path, capsys, shifted, chosen):
    """With the same lines in every frame the per-column matrices serve all 12 frames; a lattice
    moving per frame needs one set per offset, and the reconstruction takes the DFT's rows."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "operators", "--sizes", "64", "--coils", "8", "--repeats", "1", "--out", str(out)]
                + ["--shifted-mask"] * shifted) == 0
    assert f"mask; chosen: {chosen})" in capsys.readouterr().out
    (r,) = json.loads(out.read_text())["operators"]
    assert r["shifted_mask"] is shifted and r["chosen"] == chosen and r["lines"] == 29
