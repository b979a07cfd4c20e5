"""Gadgetron behaviours of `crunet serve` with the stock client's flows: noise dependencies, -q, -Q.

The client side is tests/gadgetron_harness.StockClient, written from
gadgetron_ismrmrd_client's source (a message it has no reader for aborts it).
"""

import socket
import struct

import ismrmrd
import numpy as np
import pytest

from gadgets.chain import ChainAssembler
from gadgets.dependencies import (NoiseRecord, NoiseStore, noise_record, query_target, reorder_to_labels,
                                  parse_chain, summary_meta, whitening_from_covariance)
from gadgets.server import start_background
from gadgets.settings import GadgetSettings
from recon.io import flags as F
from recon.io.header import parse_header
from recon.io.raw import read_acquisitions, write_raw
from recon.noise import whitening_matrix
from recon.simulate.cine import SimulationConfig, simulate_to_file
from tests.gadgetron_harness import NOISE_QUERY_CHAIN, StockClient, file_acquisitions

N_PHASES, N_SLICES, N_COILS = 3, 2, 3
NOISE_ID, SCAN_ID = "noise_4711", "scan_4712"


def _with_ids(xml: bytes, own: str, dependency: str | None):
    h = parse_header(xml)
    h.measurementInformation.measurementID = own
    h.measurementInformation.measurementDependency = (
        [ismrmrd.xsd.measurementDependencyType(dependencyType="Noise", measurementID=dependency)]
        if dependency else [])
    return h


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A scan with its noise scan in the stream, the noise alone, and the scan depending on it."""
    d = tmp_path_factory.mktemp("deps")
    raw = d / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=N_SLICES, n_phases=N_PHASES, n_coils=N_COILS,
                                      matrix=(40, 32), n_acs=12, acceleration=4), raw)
    _, xml, headers, data = read_acquisitions(raw)
    noise = F.is_noise(headers["flags"])
    idx = np.flatnonzero(noise)
    rest = np.flatnonzero(~noise)
    return {
        "inline": raw,
        "noise": write_raw(d / "noise.h5", _with_ids(xml, NOISE_ID, None), headers[idx], [data[i] for i in idx]),
        "scan": write_raw(d / "scan.h5", _with_ids(xml, SCAN_ID, NOISE_ID), headers[rest], [data[i] for i in rest]),
        "noise_lines": [data[i] for i in idx],
        "dwell": float(headers["sample_time_us"][idx[0]]),
    }


@pytest.fixture
def server():
    srv, _ = start_background(idle_timeout=30)
    yield srv
    srv.shutdown(grace=0)
    srv.server_close()


def _zf():
    return "crunet_zf.xml"


# ------------------------------------------------------------------ dependency query


def test_unknown_dependency_gets_status_failed_not_an_abort(server):
    stats = StockClient(server.port).noise_statistics("never_stored")
    assert stats == {"status": False}


def test_dependency_reply_is_message_1019_then_close(server):
    """Exactly what DependencyQueryWriter writes: id 1019, uint64 length, Meta XML; then CLOSE."""
    script = NOISE_QUERY_CHAIN.format(noise_file="GadgetronNoiseCovarianceMatrix_x").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(struct.pack("<HI", 2, len(script)) + script + struct.pack("<H", 4))
        f = s.makefile("rb")
        (mid,) = struct.unpack("<H", f.read(2))
        (n,) = struct.unpack("<Q", f.read(8))
        body = f.read(n)
        assert f.read(2) == struct.pack("<H", 4) and f.read(1) == b""
    assert mid == 1019
    assert dict(ismrmrd.Meta.deserialize(body)) == {"status": "failed"}


def test_noise_measurement_stored_then_summarised(files, server):
    client = StockClient(server.port)
    run = client.replay(files["noise"], config="default_measurement_dependencies.xml")
    assert not run.aborted and not run.images and not run.texts
    stats = client.noise_statistics(NOISE_ID)
    cov = noise_record(files["noise_lines"], files["dwell"]).covariance
    sig = np.sqrt(np.real(np.diag(cov)))
    assert stats["status"] and stats["channels"] == N_COILS
    assert stats["noise_dwell_time_us"] == pytest.approx(files["dwell"])
    assert stats["sigma_min"] == pytest.approx(sig.min(), rel=1e-5)
    assert stats["sigma_max"] == pytest.approx(sig.max(), rel=1e-5)
    assert stats["sigma_mean"] == pytest.approx(sig.mean(), rel=1e-5)


def test_dependent_scan_is_whitened_with_the_stored_noise(files, server):
    """Noise stored first; the scan without noise lines gives the images of the scan with them."""
    client = StockClient(server.port)
    assert not client.replay(files["noise"], config="default_measurement_dependencies.xml").aborted
    dependent = client.replay(files["scan"], config=_zf())
    assert not dependent.aborted and not dependent.texts, dependent.aborted
    assert dependent.noise_stats["status"] and dependent.noise_stats["channels"] == N_COILS
    inline = client.replay(files["inline"], config=_zf())
    assert not inline.aborted and inline.noise_stats is None
    assert len(dependent.images) == len(inline.images) == N_PHASES * N_SLICES
    for a, b in zip(dependent.images, inline.images):
        assert (a.slice, a.phase) == (b.slice, b.phase)
        np.testing.assert_allclose(a.data, b.data, rtol=2e-4, atol=1e-6 * np.abs(b.data).max())


def test_dependent_scan_without_stored_noise_goes_on(files, server):
    """As Gadgetron: the client warns (status failed) and sends the scan; nothing aborts."""
    run = StockClient(server.port).replay(files["scan"], config=_zf())
    assert not run.aborted and run.noise_stats == {"status": False}
    assert len(run.images) == N_PHASES * N_SLICES and not run.texts


def test_a_scan_with_a_noise_scan_stores_it_under_its_id(files, server, tmp_path):
    """NoiseAdjustGadget stores the stream's noise under the stream's measurementID, in any chain."""
    _, xml, headers, data = read_acquisitions(files["inline"])
    path = write_raw(tmp_path / "own.h5", _with_ids(xml, "own_1", None), headers, data)
    client = StockClient(server.port)
    assert len(client.replay(path, config=_zf()).images) == N_PHASES * N_SLICES
    assert client.noise_statistics("own_1")["channels"] == N_COILS


def test_noise_measurement_without_id_is_reported(files, server, tmp_path):
    _, xml, headers, data = read_acquisitions(files["noise"])
    h = parse_header(xml)
    h.measurementInformation.measurementID = None
    path = write_raw(tmp_path / "anon.h5", h, headers, data)
    run = StockClient(server.port).replay(path, config="default_measurement_dependencies.xml")
    assert not run.aborted and len(run.texts) == 1 and "no measurementID" in run.texts[0]


# ------------------------------------------------------------------ -q and -Q


def test_q_config_then_close_does_not_hang(server):
    """-q -c chain: CONFIG_FILE then CLOSE (no header): Gadgetron runs the chain on nothing, then CLOSE."""
    run = StockClient(server.port, timeout=10).query(config=_zf())
    assert not run.aborted and not run.texts and not run.images


def test_q_with_the_noise_summary_chain_answers_1019(files, server):
    client = StockClient(server.port, timeout=10)
    client.replay(files["noise"], config="default_measurement_dependencies.xml")
    script = NOISE_QUERY_CHAIN.format(noise_file="GadgetronNoiseCovarianceMatrix_" + NOISE_ID)
    run = client.query(script=script)
    assert not run.aborted and len(run.dependency_replies) == 1
    assert ismrmrd.Meta.deserialize(run.dependency_replies[0])["status"] == "success"


def test_q_with_an_unknown_chain_is_text_then_close(server):
    run = StockClient(server.port, timeout=10).query(config="nope.xml")
    assert not run.aborted and len(run.texts) == 1 and "unknown config 'nope.xml'" in run.texts[0]


@pytest.mark.parametrize("query, expected", [
    ("gadgetron::info", "crunet serve"),
    ("gadgetron::info::python", "1"),
    ("gadgetron::version", "crunet-gadgetron"),
    ("gadgetron::health", "Unknown query"),  # not a Gadgetron 4 query either
    ("what", "Unknown query"),
])
def test_Q_info_queries_get_a_response(server, query, expected):
    run = StockClient(server.port, timeout=10).info(query)
    assert not run.aborted and not run.texts
    assert len(run.responses) == 1 and expected in run.responses[0]


def test_query_with_reserved_bytes_is_refused(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(struct.pack("<HQQQ", 6, 1, 0, 2) + b"hi")
        f = s.makefile("rb")
        (mid, n) = struct.unpack("<HI", f.read(6))
        text = f.read(n).decode()
        assert f.read(2) == struct.pack("<H", 4)
    assert mid == 5 and "reserved" in text


# ------------------------------------------------------------------ units


def test_summary_meta_fields():
    rec = NoiseRecord(np.diag([4.0, 9.0]).astype(complex), 5.0, 100)
    meta = ismrmrd.Meta.deserialize(summary_meta(rec))
    assert meta["status"] == "success" and meta["channels"] == "2"
    assert float(meta["min_sigma"]) == 2.0 and float(meta["max_sigma"]) == 3.0
    assert float(meta["mean_sigma"]) == 2.5 and float(meta["noise_dwell_time_us"]) == 5.0
    assert dict(ismrmrd.Meta.deserialize(summary_meta(None))) == {"status": "failed"}


def test_query_target_in_both_chain_formats():
    legacy = parse_chain(NOISE_QUERY_CHAIN.format(noise_file="GadgetronNoiseCovarianceMatrix_abc"), "x")
    assert query_target(legacy) == "abc"
    v2 = parse_chain('<configuration><version>2</version><stream><gadget name="n" dll="d" '
                     'classname="NoiseSummaryGadget"><property name="noise_file" value="def"/></gadget>'
                     '</stream></configuration>', "y")
    assert query_target(v2) == "def"
    assert query_target(parse_chain("<configuration/>", "z")) is None


def test_whitening_from_the_stored_covariance_is_the_scan_whitening(rng):
    noise = (rng.standard_normal((4, 500)) + 1j * rng.standard_normal((4, 500))).astype(np.complex64)
    noise[1] += 0.5 * noise[0]
    rec = noise_record([noise[:, :200], noise[:, 200:]], 5.0)
    np.testing.assert_allclose(whitening_from_covariance(rec.covariance), whitening_matrix(noise), rtol=1e-4,
                               atol=1e-5)


def test_stored_noise_is_reordered_to_the_data_coil_labels(rng):
    cov = np.diag([1.0, 4.0, 9.0]).astype(complex)
    rec = NoiseRecord(cov, 5.0, 10, ("a", "b", "c"))
    out = reorder_to_labels(rec, ("c", "a", "b"))
    np.testing.assert_array_equal(np.real(np.diag(out.covariance)), [9.0, 1.0, 4.0])
    assert reorder_to_labels(rec, ("x", "y", "z")) is rec


def test_store_is_bounded():
    store = NoiseStore(capacity=2)
    rec = NoiseRecord(np.eye(2, dtype=complex), 1.0, 10)
    for i in range(3):
        store.put(str(i), rec)
    assert len(store) == 2 and store.get("0") is None and store.get("2") is rec


def test_stored_noise_replaces_the_stream_noise(files):
    """With a stored dependency the stream's own noise lines are ignored (NoiseAdjustGadget's LoadedNoise)."""
    xml, acqs = file_acquisitions(files["inline"])
    store = NoiseStore()
    store.put(NOISE_ID, NoiseRecord(np.eye(N_COILS, dtype=complex) * 4.0, files["dwell"], 100))
    asm = ChainAssembler(_with_ids(xml, SCAN_ID, NOISE_ID), GadgetSettings(method="zf", device="cpu"), store)
    for a in acqs:
        asm.acquisition(a)
    assert asm.noise.source == f"stored noise dependency '{NOISE_ID}'"
    np.testing.assert_allclose(asm.noise.matrix(), np.eye(N_COILS) / 2.0, atol=1e-7)
