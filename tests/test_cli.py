"""The crunet command: subcommands, help, exit codes, errors without tracebacks."""

import json
import subprocess
import sys

import pytest

from recon.cli import COMMANDS, main


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
    r = subprocess.run([sys.executable, "-m", "recon.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "not an HDF5 file" in r.stderr and "Traceback" not in r.stderr


def test_bad_argument_value(capsys):
    assert main(["simulate", "/tmp/never.h5", "--view", "sax", "--phases", "0"]) == 2
    assert "n_phases" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "simulate" in capsys.readouterr().out


def _option(command: str, flag: str):
    from recon.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if flag in a.option_strings)


@pytest.mark.parametrize("command,flag", [("recon-file", "--method"), ("recon", "--method"),
                                          ("evaluate", "--methods"), ("bench", "--methods")])
def test_method_options_take_weights_names(command, flag):
    action = _option(command, flag)
    assert action.choices is None and "crunet_ca" in action.help


def test_bench_learned_and_classical_side_by_side(tmp_path, tiny_weights, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "methods", "--sizes", "32", "--coils", "2", "--repeats", "2", "--device", "cpu",
                 "--methods", "zf", "crunet_ca", "crnn", "--weights", str(tiny_weights / "crunet_conv"),
                 "--out", str(out)]) == 0
    assert "crunet_ca" in capsys.readouterr().out
    r = json.loads(out.read_text())["methods"][0]
    assert list(r["methods"]) == ["zf", "crunet_ca", "crnn", "crunet_conv"] and r["device"] == "cpu"
    for label, v in r["methods"].items():
        assert v["seconds"] > 0 and len(v["all_seconds"]) == 1 and v["ratio_to_fastest"] >= 1, label
    assert r["methods"]["crunet_ca"]["model"].startswith("crunet crunet_ca: CRUNet-MR 4ch x2 fusion ca")
    assert "model" not in r["methods"]["zf"]


def test_bench_refuses_unknown_method_before_work(tmp_path, capsys):
    assert main(["bench", "--what", "methods", "--methods", "zf", "nonsense", "--out", str(tmp_path / "b.json")]) == 2
    assert "unknown method 'nonsense'" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


def test_serve_and_gadget_report_the_default_weights(tiny_weights):
    from recon.weights import weights_status

    assert weights_status().startswith("crunet_ca: CRUNet-MR 4ch x2 fusion ca (bank all) sha256:")
    assert weights_status("nope").startswith("nope: not usable: trained weights 'nope' not found")
