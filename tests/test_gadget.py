"""The external gadget over TCP, with Gadgetron's side played by tests/gadgetron_harness.py."""

import socket
import struct
import threading
import time

import ismrmrd
import numpy as np
import pytest

from gadgets.bucket import Bucket, bucket_message, bucket_to_slice, read_bucket
from gadgets.external import PeerClosed, SafeSocket, listen
from gadgets.gadget import reconstruct
from recon.errors import InputError
from recon.io.header import encoding_info, parse_header
from recon.io.raw import read_raw
from recon.simulate.cine import SimulationConfig, simulate_to_file
from tests.conftest import TINY_CA_DESCRIPTION
from tests.gadgetron_harness import GadgetronPeer, configuration, file_acquisitions, slice_buckets

N_PHASES, N_SLICES = 3, 3


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("gadget") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=N_SLICES, n_phases=N_PHASES, n_coils=3, matrix=(40, 32),
                                      n_acs=12, acceleration=4), path)
    return path


@pytest.fixture(scope="module")
def stream(raw):
    xml, acqs = file_acquisitions(raw)
    return xml, acqs, slice_buckets(acqs)


# ------------------------------------------------------------------ bucket format


def test_bucket_roundtrip_matches_package_reader_and_file(raw, stream):
    from gadgetron.types.acquisition_bucket import read_acquisition_bucket

    xml, _, buckets = stream
    msg = bucket_message(buckets[1], with_id=False)
    buf = memoryview(msg)
    pos = 0

    class Src:
        def read(self, n):
            nonlocal pos
            out = bytes(buf[pos:pos + n])
            pos += n
            return out

    pkg = read_acquisition_bucket(Src())
    assert len(pkg.data) == len(buckets[1].data) and len(pkg.ref) == len(buckets[1].ref)
    assert pkg.datastats[0].phase == set(range(N_PHASES))
    ours = read_bucket(iter_reader(msg))
    header = parse_header(xml)
    s = bucket_to_slice(ours, encoding_info(header), header)
    ref = read_raw(raw).slices[1]
    np.testing.assert_array_equal(s.kspace, ref.kspace)
    np.testing.assert_array_equal(s.acs, ref.acs)
    # arrays from our reader are writable (the package's are read-only)
    ours.data[0].data[:] = 0


def iter_reader(msg: bytes):
    pos = 0

    def read(n):
        nonlocal pos
        out = msg[pos:pos + n]
        pos += n
        return out

    return read


def test_bucket_with_waveforms(stream):
    """The package's reader raises AttributeError on waveforms; ours reads them."""
    _, _, buckets = stream
    w = ismrmrd.Waveform.from_array(np.arange(20, dtype=np.uint32).reshape(2, 10))
    b = Bucket(buckets[0].data, buckets[0].ref, [w])
    out = read_bucket(iter_reader(bucket_message(b, with_id=False)))
    assert len(out.waveforms) == 1
    np.testing.assert_array_equal(out.waveforms[0].data, w.data)


def test_truncated_bucket_is_clear_error(stream):
    msg = bucket_message(stream[2][0], with_id=False)
    with pytest.raises(InputError, match="truncated"):
        read_bucket(iter_reader(msg[: len(msg) // 2]))


def test_split_for_bucket_follows_the_accumulator(stream):
    _, acqs, buckets = stream
    b = buckets[0]
    assert all(a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING) for a in b.ref)
    both = {a.scan_counter for a in b.ref} & {a.scan_counter for a in b.data}
    assert both == {a.scan_counter for a in b.ref}, "_AND_IMAGING lines are in data and ref"


# ------------------------------------------------------------------ over TCP


def _check_images(images, n_slices):
    assert len(images) == N_PHASES * n_slices
    seen = {(im.slice, im.phase) for im in images}
    assert len(seen) == len(images)
    assert [im.image_index for im in images] == list(range(1, len(images) + 1))
    for im in images:
        assert im.data.shape == (1, 1, 40, 32)
        assert np.isfinite(im.data).all() and im.data.max() > 0
        meta = ismrmrd.Meta.deserialize(im.attribute_string)
        assert meta["DataRole"] == "Image" and "zf" in meta["ImageComment"]


def test_one_slice(stream):
    xml, _, buckets = stream
    peer = GadgetronPeer()
    peer.start(configuration(method="zf", device="cpu"), xml)
    peer.raw(bucket_message(buckets[0]))
    got = peer.close()
    assert got.closed, (got.error, peer.output())
    assert not got.texts
    _check_images(got.images, 1)
    assert peer.proc.returncode == 0


def test_several_slices_and_passthrough(stream):
    xml, acqs, buckets = stream
    peer = GadgetronPeer()
    peer.start(configuration(method="zf", device="cpu", series_index=7), xml)
    unrelated = acqs[5]
    for b in buckets:
        peer.raw(bucket_message(b))
        peer.send(unrelated)  # interleaved message the gadget does not handle
    got = peer.close()
    assert got.closed, (got.error, peer.output())
    _check_images(got.images, N_SLICES)
    assert {im.image_series_index for im in got.images} == {7}
    assert sorted({im.slice for im in got.images}) == list(range(N_SLICES))
    # slices reconstruct side by side; images still go out in slice order, numbered in that order
    assert [im.slice for im in got.images] == [s for s in range(N_SLICES) for _ in range(N_PHASES)]
    assert [im.image_index for im in got.images] == list(range(1, N_SLICES * N_PHASES + 1))
    assert len(got.acquisitions) == N_SLICES, "unhandled messages pass through"
    np.testing.assert_array_equal(got.acquisitions[0].data, unrelated.data)


def _bad_bucket(bucket):
    """A copy of a slice's bucket with no calibration lines at all."""
    data = [ismrmrd.Acquisition(ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(a.getHead())), a.data.copy())
            for a in bucket.data]
    for a in data:
        a.clear_all_flags()
    return Bucket(data, [])


@pytest.mark.parametrize("reporting", [None, "image", "log", "text"])
def test_bad_slice_reported_and_others_continue(stream, reporting):
    """Always logged. Default (image): a marker image Gadgetron passes on; text: TEXT; log: nothing more."""
    xml, _, buckets = stream
    peer = GadgetronPeer()
    settings = dict(method="zf", device="cpu", series_index=7)
    if reporting:
        settings["error_reporting"] = reporting
    peer.start(configuration(**settings), xml)
    for b in (buckets[0], _bad_bucket(buckets[1]), buckets[2]):
        peer.raw(bucket_message(b))
    got = peer.close()
    assert got.closed and not got.errors
    good = [im for im in got.images if im.image_series_index == 7]
    markers = [im for im in got.images if im.image_series_index == 1007]
    assert sorted({im.slice for im in good}) == [0, 2] and len(good) == 2 * N_PHASES
    assert "slice [1]: bucket: slice 1 has no calibration lines" in peer.output()
    assert len(got.texts) == (reporting == "text")
    assert len(markers) == (reporting in (None, "image"))
    if reporting == "text":
        assert "slice 1" in got.texts[0] and "calibration" in got.texts[0]
    if markers:
        m = markers[0]
        assert m.slice == 1 and m.data.shape == (1, 1, 40, 32) and not m.data.any()
        meta = ismrmrd.Meta.deserialize(m.attribute_string)
        assert meta["CrunetStatus"] == "failed" and "no calibration lines" in meta["CrunetError"]
        assert meta["ImageComment"].startswith("crunet FAILED slice 1: bucket: slice 1 has no calibration")
        first = buckets[1].data[0]
        np.testing.assert_allclose(m.position, first.position)
        np.testing.assert_allclose(m.slice_dir, first.slice_dir)


def test_bad_configuration_sent_as_error(stream):
    """A failure of the gadget itself goes to Gadgetron as ERROR (8), then CLOSE."""
    xml, _, buckets = stream
    peer = GadgetronPeer()
    peer.start(configuration(method="nonsense"), xml)
    peer.raw(bucket_message(buckets[0]))
    got = peer.close()
    assert got.closed and not got.images and not got.texts
    assert len(got.errors) == 1 and "unknown method 'nonsense'" in got.errors[0]


def test_peer_drop_without_close_does_not_spin(stream):
    xml, _, buckets = stream
    peer = GadgetronPeer()
    peer.start(configuration(method="zf", device="cpu"), xml)
    peer.raw(bucket_message(buckets[0])[:100])  # a partial message, then the peer vanishes
    peer.sock.shutdown(socket.SHUT_RDWR)
    peer.sock.close()
    t0 = time.perf_counter()
    peer.proc.wait(60)
    assert time.perf_counter() - t0 < 30
    assert "peer closed the connection" in peer.output()


def test_safe_socket_raises_on_eof():
    a, b = socket.socketpair()
    b.sendall(b"abc")
    b.close()
    s = SafeSocket(a)
    with pytest.raises(PeerClosed):
        s.read(10)
    a.close()


def test_listen_binds_loopback_and_serves(stream):
    """`<connect port=...>` debugging mode: our listen() on loopback, Gadgetron connects."""
    xml, _, buckets = stream
    ports = []
    ready = threading.Event()
    t = threading.Thread(target=listen, args=(0, reconstruct),
                         kwargs={"ready": lambda p: (ports.append(p), ready.set())}, daemon=True)
    t.start()
    assert ready.wait(10)
    from ismrmrd.serialization import ConfigText, ProtocolDeserializer, ProtocolSerializer

    with socket.create_connection(("127.0.0.1", ports[0]), timeout=60) as sock:
        assert sock.getpeername()[0] == "127.0.0.1"
        w = sock.makefile("wb")
        out = ProtocolSerializer(w)
        out.serialize(ConfigText(configuration(method="zf", device="cpu")))
        w.write(struct.pack("<HI", 3, len(xml)) + xml)
        w.write(bucket_message(buckets[2]))
        out.close()
        items = list(ProtocolDeserializer(sock.makefile("rb")).deserialize())
    t.join(30)
    images = [i for i in items if isinstance(i, ismrmrd.Image)]
    assert len(images) == N_PHASES and {im.slice for im in images} == {2}


def _connect_session(port, xml, bucket, host="127.0.0.1"):
    from ismrmrd.serialization import ConfigText, ProtocolDeserializer, ProtocolSerializer

    with socket.create_connection((host, port), timeout=120) as sock:
        w = sock.makefile("wb")
        out = ProtocolSerializer(w)
        out.serialize(ConfigText(configuration(method="zf", device="cpu")))
        w.write(struct.pack("<HI", 3, len(xml)) + xml)
        w.write(bucket_message(bucket))
        out.close()
        return [i for i in ProtocolDeserializer(sock.makefile("rb")).deserialize() if isinstance(i, ismrmrd.Image)]


def test_serve_many_connections_like_distributed_workers(stream):
    """`crunet gadget` (gadgets.external.serve): one connection per slice, concurrently."""
    from gadgets.external import serve

    xml, _, buckets = stream
    ports, stop, ready = [], threading.Event(), threading.Event()
    t = threading.Thread(target=serve, args=(0, reconstruct),
                         kwargs={"ready": lambda p: (ports.append(p), ready.set()), "stop": stop}, daemon=True)
    t.start()
    assert ready.wait(10)
    results = [None] * len(buckets)

    def run(i):
        results[i] = _connect_session(ports[0], xml, buckets[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(buckets))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    stop.set()
    t.join(10)
    for i, images in enumerate(results):
        assert images is not None and len(images) == N_PHASES and {im.slice for im in images} == {i}


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_listen_accepts_on_both_loopback_addresses(stream, address):
    """Gadgetron connects <connect> chains to `localhost` and tries only the first address it
    resolves (::1 or 127.0.0.1 depending on the hosts file): the listener takes both."""
    xml, _, buckets = stream
    ports, ready = [], threading.Event()
    t = threading.Thread(target=listen, args=(0, reconstruct),
                         kwargs={"ready": lambda p: (ports.append(p), ready.set())}, daemon=True)
    t.start()
    assert ready.wait(10)
    images = _connect_session(ports[0], xml, buckets[0], host=address)
    t.join(30)
    assert not t.is_alive() and len(images) == N_PHASES


def test_serve_listens_dual_stack(stream):
    from gadgets.external import serve

    xml, _, buckets = stream
    ports, stop, ready = [], threading.Event(), threading.Event()
    t = threading.Thread(target=serve, args=(0, reconstruct),
                         kwargs={"ready": lambda p: (ports.append(p), ready.set()), "stop": stop}, daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        for host in ("::1", "127.0.0.1", "localhost"):
            assert len(_connect_session(ports[0], xml, buckets[0], host=host)) == N_PHASES
    finally:
        stop.set()
        t.join(10)


def test_bind_listeners_shapes():
    from gadgets.net import bind_listeners

    both = bind_listeners("localhost", 0)
    try:
        assert [s.getsockname()[0] for s in both] == ["127.0.0.1", "::1"]
        assert len({s.getsockname()[1] for s in both}) == 1
    finally:
        for s in both:
            s.close()
    one = bind_listeners("127.0.0.1", 0)
    assert len(one) == 1 and one[0].getsockname()[0] == "127.0.0.1"
    one[0].close()


def test_array_writer_numpy2_guard():
    """The package's write_array fails on numpy 2 when a cast is needed; after hardening it works."""
    import io

    import gadgetron.external.writers as writers
    from gadgets.external import patch_array_writer

    buf = io.BytesIO()
    arr = np.arange(6, dtype=np.float64).reshape(2, 3)
    patch_array_writer()
    writers.write_array(buf, arr, np.complex64)
    raw = buf.getvalue()
    dims = np.frombuffer(raw[8:24], np.uint64)
    data = np.frombuffer(raw[24:], np.complex64).reshape(tuple(dims), order="F")
    np.testing.assert_array_equal(data, arr.astype(np.complex64))
    import gadgetron.types.recon_data as recon_data
    assert recon_data.write_array is writers.write_array


# ------------------------------------------------------------------ the learned default


def test_default_method_is_the_learned_model(stream):
    """No method setting: crunet_ca, found by the gadget process through $CRUNET_WEIGHTS_DIR (tiny stand-in)."""
    xml, _, buckets = stream
    peer = GadgetronPeer()
    peer.start(configuration(device="cpu"), xml)
    peer.raw(bucket_message(buckets[0]))
    got = peer.close()
    assert got.closed and not got.errors and not got.texts, peer.output()
    assert len(got.images) == N_PHASES
    comment = ismrmrd.Meta.deserialize(got.images[0].attribute_string)["ImageComment"]
    assert comment.startswith(f"crunet crunet_ca (refine=motion): {TINY_CA_DESCRIPTION} sha256:")


def test_missing_default_weights_is_one_error_line(stream, monkeypatch, tmp_path, caplog):
    """The gadget in-process (as `crunet gadget` runs it), with no weights anywhere: ERROR, no traceback."""
    import recon.weights as W
    from ismrmrd.serialization import ConfigText, ProtocolSerializer

    monkeypatch.setattr(W, "builtin_weights_dirs", lambda: [])
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    xml, _, _ = stream
    ports, ready = [], threading.Event()
    t = threading.Thread(target=listen, args=(0, reconstruct),
                         kwargs={"ready": lambda p: (ports.append(p), ready.set())}, daemon=True)
    t.start()
    assert ready.wait(10)
    with socket.create_connection(("127.0.0.1", ports[0]), timeout=60) as sock:
        w = sock.makefile("wb")
        out = ProtocolSerializer(w)
        out.serialize(ConfigText(configuration(device="cpu")))
        w.write(struct.pack("<HI", 3, len(xml)) + xml)
        w.flush()
        r = sock.makefile("rb")
        (mid,) = struct.unpack("<H", r.read(2))
        (n,) = struct.unpack("<Q", r.read(8))
        message = r.read(n).decode()
        (close,) = struct.unpack("<H", r.read(2))
    t.join(30)
    assert (mid, close) == (8, 4)  # ERROR, then CLOSE
    assert message.startswith("crunet gadget error: gadget settings: method 'crunet_ca': trained weights 'crunet_ca' "
                              "not found")
    assert "crunet_sense.xml" in message and "\n" not in message
    assert not any(rec.exc_info for rec in caplog.records)


def test_readme_lists_every_setting_with_its_default():
    """xml_configs/README.md's settings table = gadgets/settings.py (names and defaults)."""
    import dataclasses
    import re
    from pathlib import Path

    from gadgets.settings import GadgetSettings

    text = (Path(__file__).resolve().parents[1] / "xml_configs" / "README.md").read_text()
    table = text.split("## Settings (", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.M))
    fields = {f.name: f.default for f in dataclasses.fields(GadgetSettings)}
    assert set(rows) == set(fields)
    for name, default in fields.items():
        shown = rows[name].strip()
        want = "(empty)" if default == "" else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        assert shown == want, (name, shown, want)
    assert f"There are {['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'][len(fields)]} " \
           "settings" in text
