"""crunet serve as an MRD App: python-ismrmrd-server's client (re-implemented in mrd_client_harness), its
JSON parameters (configAdditional), and the OpenRecon description of the settings."""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import ismrmrd
import pytest

from gadgets import mrdapp
from gadgets.mrdapp import chain_settings, parse_config_additional
from gadgets.server import start_background
from gadgets.settings import GadgetSettings
from recon.errors import InputError
from recon.simulate.cine import SimulationConfig, simulate_to_file
from tests.gadgetron_harness import CHAIN_ZF
from tests.mrd_client_harness import MrdAppClient

N_PHASES, N_SLICES, SHAPE = 3, 2, (40, 32)
DOCKER = Path(__file__).resolve().parents[1] / "docker"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("mrdapp") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=N_SLICES, n_phases=N_PHASES, n_coils=3, matrix=SHAPE,
                                      n_acs=12, acceleration=4), path)
    return path


@pytest.fixture(scope="module")
def server():
    srv, _ = start_background(idle_timeout=20)
    yield srv
    srv.shutdown()
    srv.server_close()


def _client(server) -> MrdAppClient:
    return MrdAppClient(server.port, address="127.0.0.1", timeout=120)


def _comment(image) -> str:
    return ismrmrd.Meta.deserialize(image.attribute_string)["ImageComment"]


def _with_config_additional(raw, tmp_path, text: str) -> Path:
    """A copy of the raw file with /dataset/configAdditional, as python-ismrmrd-server saves it."""
    path = tmp_path / "raw_json.h5"
    shutil.copy(raw, path)
    with h5py.File(path, "a") as f:
        d = f["dataset"].require_dataset("configAdditional", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
        d[0] = text.encode()
    return path


def _assert_one_image_per_slice_and_phase(run, series: int):
    assert run.closed and not run.texts and not run.receiver_error and not run.send_failed, run
    assert {(im.slice, im.phase) for im in run.images} == {(s, p) for s in range(N_SLICES) for p in range(N_PHASES)}
    assert len(run.images) == N_SLICES * N_PHASES
    with h5py.File(run.outfile) as f:  # the layout client.py writes
        group = f[run.out_group]
        assert sorted(group) == [f"image_{series}", "xml"]
        assert set(group[f"image_{series}"]) == {"data", "header", "attributes"}
        assert group[f"image_{series}/data"].shape == (N_SLICES * N_PHASES, 1, 1) + SHAPE
    ds = ismrmrd.Dataset(str(run.outfile), run.out_group, create_if_needed=False)
    try:
        heads = [ds.read_image(f"image_{series}", i).getHead() for i in range(ds.number_of_images(f"image_{series}"))]
    finally:
        ds.close()
    assert sorted((h.slice, h.phase) for h in heads) == [(s, p) for s in range(N_SLICES) for p in range(N_PHASES)]


# ------------------------------------------------------------------ replays with the reference client


def test_client_replay_without_json(raw, server, tmp_path):
    """`python client.py -c crunet_zf -o out.h5 -G run raw.h5`, no crunet_zf.json in the working folder."""
    run = _client(server).run(raw, outfile=tmp_path / "out.h5", out_group="run", config="crunet_zf", cwd=tmp_path)
    assert run.sent_json is None
    _assert_one_image_per_slice_and_phase(run, series=10)
    assert _comment(run.images[0]) == "crunet zf, espirit maps"


def test_client_replay_with_json_parameter_file(raw, server, tmp_path, caplog):
    """`-c crunet_zf` with ./crunet_zf.json: its settings apply; 'config' is dropped by the client (-c given);
    UI keys of other apps are ignored with a log line."""
    (tmp_path / "crunet_zf.json").write_text(json.dumps({"version": "1.1.0", "parameters": {
        "config": "crunet_lps", "method": "sense", "seriesindex": 7, "coil_method": "walsh",
        "noiseadjust": "False", "sendOriginal": "True"}}))
    with caplog.at_level("INFO", logger="crunet"):
        run = _client(server).run(raw, outfile=tmp_path / "out.h5", out_group="g", config="crunet_zf",
                                  cwd=tmp_path)
    assert "config" not in json.loads(run.sent_json)["parameters"]
    _assert_one_image_per_slice_and_phase(run, series=7)
    assert _comment(run.images[0]) == "crunet sense, walsh maps"
    assert "ignoring parameter(s) sendOriginal" in caplog.text


def test_client_default_config_with_json_config_in_raw_file(raw, server, tmp_path):
    """No -c (client default 'invertcontrast'): the raw file's configAdditional names the chain, as an
    OpenRecon scanner's parameters do."""
    path = _with_config_additional(raw, tmp_path, json.dumps({"version": "1.0.0", "parameters": {
        "config": "crunet_sense", "device": "cpu"}}))
    run = _client(server).run(path, outfile=tmp_path / "out.h5", out_group="g", cwd=tmp_path)
    _assert_one_image_per_slice_and_phase(run, series=30)
    assert _comment(run.images[0]) == "crunet sense, espirit maps"


def test_client_default_config_alone_is_a_text_naming_the_chains(raw, server, tmp_path):
    run = _client(server).run(raw, outfile=tmp_path / "out.h5", out_group="g", cwd=tmp_path)
    assert run.closed and not run.images and len(run.texts) == 1 and not run.receiver_error
    text = run.texts[0]
    assert "unknown config 'invertcontrast'" in text and "-c crunet" in text
    assert "crunet_sense.xml (crunet_sense)" in text
    with h5py.File(run.outfile) as f:
        assert sorted(f["g"]) == ["xml"]


def test_client_local_chain_file(raw, server, tmp_path):
    """`-C chain.xml`: CONFIG_TEXT (2), NUL-terminated."""
    chain = tmp_path / "my_chain.xml"
    chain.write_text(CHAIN_ZF)
    run = _client(server).run(raw, outfile=tmp_path / "out.h5", out_group="g", config_local=chain, cwd=tmp_path)
    _assert_one_image_per_slice_and_phase(run, series=1)


@pytest.mark.parametrize("text, expected", [
    ('{"version": "1.0", "parameters": {"method": "zf",', "configAdditional: the TEXT after the header is not valid"),
    ('["crunet"]', "expected a JSON object"),
    ('{"parameters": ["method", "zf"]}', "'parameters' must be an object"),
    ('{"parameters": {"config": "crunet_zf", "seriesindex": "abc"}}',
     "configAdditional parameter 'seriesindex' = 'abc': gadget settings.series_index: expected an integer"),
    ('{"parameters": {"config": "crunet_zf", "seriesindex": 70000}}', "configAdditional parameter 'seriesindex'"),
    ('{"parameters": {"config": "crunet_zf", "method": "nope"}}', "configAdditional parameter 'method' = 'nope'"),
    ('{"parameters": {"config": "crunet_zf", "device": ["cpu"]}}',
     "'device': expected a string, number or boolean, got list"),
    ('{"parameters": {"config": "crunet_zf", "noise_adjust": null}}', "got null"),
    ('{"parameters": {"config": "crunet_zf", "weights": "x"}}', "setting 'weights' goes only with method 'model'"),
    ('{"parameters": {"config": "nope"}}', "configAdditional parameter 'config': unknown config 'nope'"),
    ('{"parameters": {"config": "../crunet"}}', "configAdditional parameter 'config': config '../crunet' refused"),
    ('{"parameters": {"config": "crunet_zf", "coilmethod": "walsh", "coil_method": "espirit"}}', "given twice"),
])
def test_bad_json_parameters_are_one_text_and_the_server_goes_on(raw, server, tmp_path, text, expected):
    """Sent as is (no -c: the client does not parse it); each answer is TEXT + CLOSE, never a crash."""
    (tmp_path / "invertcontrast.json").write_text(text)
    run = _client(server).run(raw, outfile=tmp_path / "out.h5", out_group="g", cwd=tmp_path)
    assert run.closed and not run.images and len(run.texts) == 1, run
    assert expected in run.texts[0] and "\n" not in run.texts[0], run.texts[0]
    again = _client(server).run(raw, outfile=tmp_path / "again.h5", out_group="g", config="crunet_zf", cwd=tmp_path)
    assert again.closed and len(again.images) == N_SLICES * N_PHASES


def test_malformed_json_with_c_ends_the_client_before_sending(raw, server, tmp_path):
    """With -c the reference client parses ./<config>.json itself; a malformed one stops it (not our server)."""
    (tmp_path / "crunet_zf.json").write_text("{oops")
    with pytest.raises(json.JSONDecodeError):
        _client(server).run(raw, outfile=tmp_path / "out.h5", out_group="g", config="crunet_zf", cwd=tmp_path)


def test_gadgetron_client_unknown_xml_name_still_refused_at_once(server):
    """Only extension-less (MRD App) names wait for the JSON; 'nope.xml' is refused before any header."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(struct.pack("<H", 1) + b"nope.xml".ljust(1024, b"\0"))
        f = s.makefile("rb")
        (mid,) = struct.unpack("<H", f.read(2))
        (n,) = struct.unpack("<I", f.read(4))
        assert mid == 5 and "unknown config 'nope.xml'" in f.read(n).decode()
        assert struct.unpack("<H", f.read(2)) == (4,)


def test_unmodified_reference_client_when_available(raw, server, tmp_path):
    """The real client.py, if $CRUNET_MRD_CLIENT_DIR names a python-ismrmrd-server checkout (else skipped)."""
    folder = os.environ.get("CRUNET_MRD_CLIENT_DIR")
    if not folder or not (Path(folder) / "client.py").is_file():
        pytest.skip("set CRUNET_MRD_CLIENT_DIR to a python-ismrmrd-server checkout to run its client.py")
    (tmp_path / "crunet_zf.json").write_text('{"version": "1.0", "parameters": {"seriesindex": 5}}')
    out = tmp_path / "out.h5"
    proc = subprocess.run([sys.executable, str(Path(folder) / "client.py"), "-a", "127.0.0.1", "-p", str(server.port),
                           "-c", "crunet_zf", "-o", str(out), "-G", "run", str(raw)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with h5py.File(out) as f:
        assert f["run/image_5/data"].shape == (N_SLICES * N_PHASES, 1, 1) + SHAPE


# ------------------------------------------------------------------ configAdditional, without a network


def test_config_additional_value_forms():
    extra = parse_config_additional(json.dumps({"version": "1.1.0", "parameters": {
        "method": "sense", "coilmethod": "walsh", "seriesindex": 12.0, "noiseadjust": "False",
        "error_reporting": "log", "options": "", "sendOriginal": True}}) + "\0")
    assert extra.config is None and extra.version == "1.1.0"
    assert extra.ignored == ("options", "sendOriginal")
    s = chain_settings({"method": "zf", "device": "cpu"}, extra)
    assert (s.method, s.coil_method, s.series_index, s.noise_adjust, s.error_reporting, s.device) == \
        ("sense", "walsh", 12, False, "log", "cpu")
    assert chain_settings({"noise_adjust": "true"}, parse_config_additional(
        '{"parameters": {"noiseadjust": false, "method": "zf"}}')).noise_adjust is False


def test_config_additional_config_keys():
    assert parse_config_additional('{"parameters": {"config": "crunet_zf"}}').config == "crunet_zf"
    assert parse_config_additional('{"parameters": {"config": "crunet_zf", "customconfig": "crunet_lps"}}'
                                   ).config == "crunet_lps"
    assert parse_config_additional('{"parameters": {"config": "crunet_zf", "customconfig": ""}}').config == "crunet_zf"
    assert parse_config_additional('{"version": "1"}').config is None
    with pytest.raises(InputError, match="'config': expected a chain name"):
        parse_config_additional('{"parameters": {"config": 3}}')


def test_chain_errors_are_not_blamed_on_the_json():
    """A chain whose own settings are wrong keeps its message; a JSON that fixes them is accepted."""
    with pytest.raises(InputError) as err:
        chain_settings({"method": "zf", "weights": "w"}, parse_config_additional('{"parameters": {"device": "cpu"}}'))
    assert not str(err.value).startswith("configAdditional")
    fixed = chain_settings({"method": "nope"}, parse_config_additional('{"parameters": {"method": "sense"}}'))
    assert fixed.method == "sense"


# ------------------------------------------------------------------ the OpenRecon description vs the settings


def test_shipped_label_and_default_parameters_are_generated():
    """docker/OpenReconLabel.json and docker/crunet.json are what `python -m gadgets.mrdapp --write docker` writes."""
    assert json.loads((DOCKER / mrdapp.LABEL_FILE).read_text()) == mrdapp.label()
    assert json.loads((DOCKER / mrdapp.PARAMETERS_FILE).read_text()) == mrdapp.default_parameters()


def test_label_parameters_match_the_settings_schema(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # 'cuda' is a valid choice on a GPU host
    params = {p["id"]: p for p in mrdapp.ui_parameters()}
    defaults = GadgetSettings()
    assert list(params) == ["config"] + [mrdapp.param_id(n) for n in mrdapp.setting_names()]
    assert len(params) <= mrdapp.MAX_UI_PARAMETERS
    assert params["config"]["default"] == mrdapp.LABEL_CONFIG
    for name in mrdapp.setting_names():
        p = params[mrdapp.param_id(name)]
        assert p["id"].isalnum() and p["label"]["en"] and p["information"]["en"]
        default = getattr(defaults, name)
        assert p["default"] == default and type(p["default"]) is type(default), name
        kind = {bool: "boolean", int: "int", str: None}[type(default)]
        assert kind is None or p["type"] == kind, name
        base = {"method": "zf", "device": "cpu"}
        if p["type"] == "choice":
            ids = [v["id"] for v in p["values"]]
            assert default in ids and len(set(ids)) == len(ids)
            for v in ids:  # every choice passes the settings validator...
                extra = {"weights": "crunet_ca"} if (name, v) == ("method", "model") else {}
                assert getattr(GadgetSettings.from_mapping({**base, name: v, **extra}), name) == v
            with pytest.raises(InputError):  # ...and a value off the list does not
                GadgetSettings.from_mapping({**base, name: "not_a_choice"})
        elif p["type"] == "int":
            lo, hi = p["minimum"], p["maximum"]
            for v in (lo, hi):
                assert getattr(GadgetSettings.from_mapping({**base, name: str(v)}), name) == v
            for v in (lo - 1, hi + 1):
                with pytest.raises(InputError):
                    GadgetSettings.from_mapping({**base, name: str(v)})
        else:
            assert p["type"] in ("boolean", "string")
    # what the UI sends untouched gives the default settings
    extra = parse_config_additional(json.dumps(mrdapp.default_parameters()))
    assert extra.config == mrdapp.LABEL_CONFIG and not extra.ignored
    assert chain_settings({}, extra) == defaults


def test_label_has_the_openrecon_layout():
    lab = mrdapp.label()
    assert set(lab) == {"general", "reconstruction", "parameters"}
    assert {"name", "version", "vendor", "information", "id", "regulatory_information"} <= set(lab["general"])
    rec = lab["reconstruction"]
    assert rec["port"] == 9002 and rec["emitter"] == "raw" and rec["transfer_protocol"]["protocol"] == "ISMRMRD"
    required = {"boolean": {"default"}, "string": set(), "choice": {"default", "values"},
                "int": {"minimum", "maximum", "default"}}
    for p in lab["parameters"]:
        assert {"id", "label", "type"} | required[p["type"]] <= set(p), p


def test_mrdapp_dockerfile_serves_what_the_label_declares():
    """Static checks of files no test can build here: entry point, port and copied files agree with the label."""
    text = (DOCKER / "mrdapp.Dockerfile").read_text()
    port = mrdapp.label()["reconstruction"]["port"]
    entry = next(line for line in text.splitlines() if line.startswith("ENTRYPOINT"))
    assert json.loads(entry.split(None, 1)[1]) == ["crunet", "serve", "--host", "0.0.0.0", "--port", str(port)]
    assert f"EXPOSE {port}" in text and mrdapp.LABEL_KEY in text
    for name in ("mrdapp_start.sh", mrdapp.LABEL_FILE, mrdapp.PARAMETERS_FILE):
        assert f"docker/{name}" in text and (DOCKER / name).is_file()
    start = (DOCKER / "mrdapp_start.sh").read_text()
    assert f"crunet serve --host 0.0.0.0 --port {port}" in start and os.access(DOCKER / "mrdapp_start.sh", os.X_OK)
    assert subprocess.run(["bash", "-n", str(DOCKER / "mrdapp_start.sh")]).returncode == 0
