"""The shipped Gadgetron chains: well-formed, version 2, the intended gadget settings."""

import xml.etree.ElementTree as ET

import pytest

from gadgets.configs import ALIASES, available, config_dir, gadget_settings, resolve
from gadgets.settings import GadgetSettings
from recon.errors import InputError

EXPECTED = {"crunet.xml": ("crunet_ca", 1), "crunet_zf.xml": ("zf", 10), "crunet_lps.xml": ("lps", 20),
            "crunet_sense.xml": ("sense", 30), "crunet_connect.xml": ("crunet_ca", 1),
            "crunet_distributed.xml": ("crunet_ca", 1)}


def test_every_chain_is_listed():
    assert set(EXPECTED) <= set(available())


def test_series_indices_are_unique_per_method():
    series = {}
    for name, (method, index) in EXPECTED.items():
        assert series.setdefault(index, method) == method, name


def test_default_chain_needs_its_weights(monkeypatch, tmp_path):
    """Without crunet_ca installed the default chain is refused in one line that says what to do."""
    import recon.weights as W

    monkeypatch.setattr(W, "builtin_weights_dirs", lambda: [])
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(InputError) as e:
        gadget_settings(resolve("default.xml").read_bytes(), source="crunet.xml")
    assert "'crunet_ca' not found" in str(e.value) and "crunet_sense.xml" in str(e.value)
    assert gadget_settings(resolve("crunet_sense.xml").read_bytes()).method == "sense"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_chain_structure_and_settings(name):
    path = config_dir() / name
    root = ET.parse(path).getroot()
    assert root.tag == "configuration" and root.findtext("version").strip() == "2"
    classes = [g.findtext("classname") for g in root.iter("gadget")]
    assert "AcquisitionAccumulateTriggerGadget" in classes and "RemoveROOversamplingGadget" in classes
    acc = next(g for g in root.iter("gadget") if g.findtext("classname") == "AcquisitionAccumulateTriggerGadget")
    props = {p.get("name"): p.get("value") for p in acc.iter("property")}
    assert props["trigger_dimension"] == "slice"
    s = gadget_settings(path.read_bytes(), source=name)
    assert (s.method, s.series_index) == EXPECTED[name]
    ext = list(root.iter("external"))
    assert len(ext) == 1
    if name in ("crunet_connect.xml", "crunet_distributed.xml"):
        assert ext[0].find("connect") is not None
    else:
        ex = ext[0].find("execute")
        assert (ex.get("name"), ex.get("target"), ex.get("type")) == ("gadgets.gadget", "reconstruct", "python")


def test_distributed_splits_on_slice():
    root = ET.parse(config_dir() / "crunet_distributed.xml").getroot()
    dist = root.find("stream/distributed")
    assert dist is not None
    props = {p.get("name"): p.get("value") for p in dist.find("distributor").iter("property")}
    assert props.get("parallel_dimension") == "slice"


def test_resolve_aliases_and_refusals():
    assert resolve("default.xml").name == ALIASES["default.xml"]
    for bad in ("../crunet.xml", "/etc/passwd", "missing.xml", ".hidden.xml", "crunet.txt", "../crunet"):
        with pytest.raises(InputError):
            resolve(bad)


def test_resolve_mrd_app_names_without_extension():
    """python-ismrmrd-server's client.py sends -c crunet; its default 'invertcontrast' names the known chains."""
    assert resolve("crunet").name == "crunet.xml"
    assert resolve("crunet_sense").name == "crunet_sense.xml"
    assert resolve("default").name == ALIASES["default.xml"]
    with pytest.raises(InputError) as err:
        resolve("invertcontrast")
    msg = str(err.value)
    assert "unknown config 'invertcontrast'" in msg and "client.py" in msg and "-c crunet" in msg
    assert all(f"{n} ({n[:-4]})" in msg for n in available())


def test_settings_errors():
    with pytest.raises(InputError, match="gadget settings: unknown key"):
        GadgetSettings.from_xml('<configuration><property name="methd" value="zf"/></configuration>')
    with pytest.raises(InputError, match="unknown method"):
        GadgetSettings.from_xml('<configuration><property name="method" value="x"/></configuration>')
    with pytest.raises(InputError, match="true/false"):
        GadgetSettings.from_xml('<configuration><noise_adjust>maybe</noise_adjust></configuration>')
    with pytest.raises(InputError, match="not valid XML"):
        GadgetSettings.from_xml("<configuration>")
    assert GadgetSettings.from_xml("") == GadgetSettings()
    assert GadgetSettings.from_xml("<configuration/>") == GadgetSettings()
