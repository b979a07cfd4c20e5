"""gadgets.external and the gadgetron package it relies on: the pinned release, and a clear error when the
installed one lacks the internals it uses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import gadgets.external as ext

ROOT = Path(__file__).resolve().parents[1]


def test_setup_pins_the_release_whose_internals_are_used():
    pins = re.findall(r'"gadgetron==([^"]+)"', (ROOT / "setup.py").read_text())
    assert pins == [ext.GADGETRON_VERSION]


def test_installed_gadgetron_has_the_internals():
    ext.check_gadgetron()
    assert ext.installed_gadgetron_version() == ext.GADGETRON_VERSION


def test_a_missing_private_name_is_a_clear_error(monkeypatch):
    from gadgetron.external.connection import Connection

    monkeypatch.delattr(Connection, "_read_header")
    with pytest.raises(ext.GadgetronVersionError) as err:
        ext.check_gadgetron()
    text = str(err.value)
    assert f"installed gadgetron ({ext.installed_gadgetron_version()})" in text
    assert "gadgetron.external.connection.Connection._read_header" in text
    assert f"gadgetron=={ext.GADGETRON_VERSION}" in text


def test_a_missing_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gadgetron.types.recon_data", None)  # import fails
    with pytest.raises(ext.GadgetronVersionError, match=r"lacks module gadgetron\.types\.recon_data"):
        ext.check_gadgetron()


def test_importing_the_module_fails_with_that_error():
    code = ("import gadgetron.external.writers as w; del w.write_vector\n"
            "try:\n    import gadgets.external\nexcept ImportError as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("GadgetronVersionError ") and "gadgetron.external.writers.write_vector" in r.stdout
