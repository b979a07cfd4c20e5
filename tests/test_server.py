"""crunet serve + crunet replay: the stock client's protocol, over loopback TCP."""

import socket
import struct
import threading

import h5py
import ismrmrd
import numpy as np
import pytest
from ismrmrd.serialization import ProtocolDeserializer

from gadgets.client import replay
from gadgets.server import start_background
from crunet.cli import main
from recon.io import flags as F
from recon.io.raw import read_acquisitions, write_raw
from recon.simulate.cine import SimulationConfig, simulate_to_file
from tests.conftest import TINY_CA_DESCRIPTION
from tests.gadgetron_harness import CHAIN_ZF

N_PHASES, N_SLICES = 3, 2


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=N_SLICES, n_phases=N_PHASES, n_coils=3, matrix=(40, 32),
                                      n_acs=12, acceleration=4), path)
    return path


@pytest.fixture(scope="module")
def bad_slice_raw(raw, tmp_path_factory):
    """Slice 0 has no calibration lines; slice 1 is fine."""
    _, xml, headers, data = read_acquisitions(raw)
    sel = headers["idx"]["slice"] == 0
    headers["flags"][sel] &= ~(F.CALIBRATION | F.CALIBRATION_AND_IMAGING)
    return write_raw(tmp_path_factory.mktemp("bad") / "bad.h5", xml.decode(), headers, data)


@pytest.fixture
def server():
    srv, thread = start_background(idle_timeout=20)
    yield srv
    srv.shutdown()
    srv.server_close()


def test_replay_one_image_per_phase_and_slice(raw, server, tmp_path):
    out = tmp_path / "out.h5"
    res = replay(raw, out, port=server.port, config_script=CHAIN_ZF, group="run1")
    assert res.closed and not res.texts
    assert len(res.images) == N_PHASES * N_SLICES
    assert {(im.slice, im.phase) for im in res.images} == {(s, p) for s in range(N_SLICES) for p in range(N_PHASES)}
    # headers copied from the acquisitions
    _, _, headers, _ = read_acquisitions(raw)
    for im in res.images:
        sel = (headers["idx"]["slice"] == im.slice) & (headers["idx"]["phase"] == im.phase) \
            & ~F.is_noise(headers["flags"])
        acq = headers[sel][0]
        np.testing.assert_allclose(im.position, acq["position"])
        np.testing.assert_allclose(im.slice_dir, acq["slice_dir"])
    # layout of gadgetron_ismrmrd_client: /<group>/image_<series>/{data,header,attributes}
    with h5py.File(out) as f:
        assert set(f["run1/image_1"].keys()) == {"data", "header", "attributes"}
        assert f["run1/image_1/data"].shape == (N_PHASES * N_SLICES, 1, 1, 40, 32)
    ds = ismrmrd.Dataset(str(out), "run1", create_if_needed=False)
    assert ds.number_of_images("image_1") == N_PHASES * N_SLICES
    ds.close()


def test_config_file_by_name(raw, server):
    res = replay(raw, None, port=server.port, config="crunet_zf.xml")
    assert res.closed and not res.texts and len(res.images) == N_PHASES * N_SLICES


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/hosts", "nope.xml", "x.txt"])
def test_config_outside_folder_refused(raw, server, name):
    res = replay(raw, None, port=server.port, config=name)
    assert res.closed and not res.images
    assert len(res.texts) == 1 and "config" in res.texts[0]


def test_bad_slice_text_and_other_slices(bad_slice_raw, server, tmp_path):
    res = replay(bad_slice_raw, tmp_path / "o.h5", port=server.port, config_script=CHAIN_ZF)
    assert res.closed
    assert len(res.texts) == 1 and "slice 0" in res.texts[0] and "calibration" in res.texts[0]
    good = [im for im in res.images if im.image_series_index == 1]
    assert {im.slice for im in good} == {1} and len(good) == N_PHASES
    # the marker image the gadget sends under Gadgetron (error_reporting=image, the default)
    marker = [im for im in res.images if im.image_series_index == 1001]
    assert len(marker) == 1 and marker[0].slice == 0 and not marker[0].data.any()
    meta = ismrmrd.Meta.deserialize(marker[0].attribute_string)
    assert meta["CrunetStatus"] == "failed" and "calibration" in meta["CrunetError"]
    assert meta["ImageComment"].startswith("crunet FAILED slice 0: bucket: slice 0 has no calibration lines")


def test_several_clients_at_once(raw, server):
    results = [None] * 3

    def run(i):
        results[i] = replay(raw, None, port=server.port, config_script=CHAIN_ZF)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(r is not None and r.closed and len(r.images) == N_PHASES * N_SLICES for r in results)


def _raw_session(port, payload: bytes):
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(payload)
        return list(ProtocolDeserializer(s.makefile("rb")).deserialize())


def test_unknown_message_id_gives_text_then_close(raw, server):
    _, xml, _, _ = read_acquisitions(raw)
    payload = (struct.pack("<HI", 2, len(CHAIN_ZF)) + CHAIN_ZF.encode()
               + struct.pack("<HI", 3, len(xml)) + xml + struct.pack("<H", 777))
    items = _raw_session(server.port, payload)  # ends at the server's CLOSE
    assert len(items) == 1 and "777" in items[0]


def test_bad_header_gives_text(server):
    payload = struct.pack("<HI", 2, len(CHAIN_ZF)) + CHAIN_ZF.encode() + struct.pack("<HI", 3, 5) + b"<oops" \
        + struct.pack("<H", 4)
    items = _raw_session(server.port, payload)
    assert len(items) == 1 and "HEADER" in items[0]


def test_idle_client_is_closed_not_hung(tmp_path):
    srv, _ = start_background(idle_timeout=1.0)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(struct.pack("<HI", 2, len(CHAIN_ZF)) + CHAIN_ZF.encode())
            items = list(ProtocolDeserializer(s.makefile("rb")).deserialize())
        assert len(items) == 1 and "idle" in items[0]
    finally:
        srv.shutdown()
        srv.server_close()


def test_binds_loopback_by_default(server):
    assert server.server_address[0] == "127.0.0.1"


def test_cli_recon_in_process(raw, tmp_path, capsys):
    out = tmp_path / "inproc.h5"
    assert main(["recon", str(raw), str(out), "--config", "crunet_zf.xml"]) == 0
    with h5py.File(out) as f:
        assert f["dataset/image_10/data"].shape[0] == N_PHASES * N_SLICES


def _comment(image) -> str:
    return ismrmrd.Meta.deserialize(image.attribute_string)["ImageComment"]


def test_default_chain_runs_the_learned_model(raw, server):
    """default.xml = crunet.xml = crunet_ca (here the tiny stand-in from $CRUNET_WEIGHTS_DIR)."""
    res = replay(raw, None, port=server.port, config="default.xml")
    assert res.closed and not res.texts and len(res.images) == N_PHASES * N_SLICES
    assert {im.image_series_index for im in res.images} == {1}
    assert _comment(res.images[0]).startswith(f"crunet crunet_ca (refine=motion): {TINY_CA_DESCRIPTION} sha256:")
    res = replay(raw, None, port=server.port, config="crunet_sense.xml")
    assert res.closed and not res.texts and {im.image_series_index for im in res.images} == {30}
    assert _comment(res.images[0]) == "crunet sense, espirit maps"


def test_default_chain_without_weights_is_one_text_line(raw, server, monkeypatch, tmp_path):
    import recon.weights as W

    monkeypatch.setattr(W, "builtin_weights_dirs", lambda: [])
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    res = replay(raw, None, port=server.port, config="crunet.xml")
    assert res.closed and not res.images and len(res.texts) == 1
    text = res.texts[0]
    assert "'crunet_ca' not found" in text and "crunet_sense.xml" in text and "\n" not in text.strip("\0")


def test_cli_recon_default_chain_and_method_override(raw, tmp_path, tiny_weights, capsys):
    out = tmp_path / "default.h5"
    assert main(["recon", str(raw), str(out)]) == 0
    assert "(crunet_ca)" in capsys.readouterr().out
    with h5py.File(out) as f:
        assert f["dataset/image_1/data"].shape[0] == N_PHASES * N_SLICES
    assert main(["recon", str(raw), str(tmp_path / "crnn.h5"), "--method", "crnn"]) == 0
    assert "(crnn)" in capsys.readouterr().out
    assert main(["recon", str(raw), str(tmp_path / "dir.h5"), "-c", "crunet_zf.xml",
                 "--weights", str(tiny_weights / "crunet_conv")]) == 0
    assert "(model)" in capsys.readouterr().out
    with h5py.File(tmp_path / "dir.h5") as f:
        assert f["dataset/image_10/data"].shape[0] == N_PHASES * N_SLICES


def test_mrd_client_flow_nul_header_and_json_text(raw, server):
    """python-ismrmrd-server's client: header NUL-terminated, JSON parameters as TEXT after it (logged)."""
    from ismrmrd.serialization import ProtocolSerializer

    from gadgets.bucket import arrays_to_acquisitions

    _, xml, headers, data = read_acquisitions(raw)
    xml0 = xml + b"\0"
    params = b'{"version": "1.0", "parameters": {}}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        w = s.makefile("wb")
        w.write(struct.pack("<H", 1) + b"crunet_zf.xml".ljust(1024, b"\0"))
        w.write(struct.pack("<HI", 3, len(xml0)) + xml0 + struct.pack("<HI", 5, len(params)) + params)
        out = ProtocolSerializer(w)
        for acq in arrays_to_acquisitions(headers, data):
            out.serialize(acq)
        out.close()
        items = list(ProtocolDeserializer(s.makefile("rb")).deserialize())
    assert len([i for i in items if isinstance(i, ismrmrd.Image)]) == N_PHASES * N_SLICES
    assert not [i for i in items if isinstance(i, str)]
