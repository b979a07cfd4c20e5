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
