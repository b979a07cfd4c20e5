"""Faults around `crunet serve`: refused and hostile connections, a client that vanishes, a server
that is stopped (in-process and by SIGTERM), and what `crunet replay` leaves behind."""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import h5py
import ismrmrd
import numpy as np
import pytest

import gadgets.chain as chain
from gadgets.client import partial_path, replay
from gadgets.protocol import Limits
from gadgets.server import start_background
from crunet.cli import main
from recon.simulate.cine import SimulationConfig, simulate_to_file
from tests.gadgetron_harness import StockClient

N_PHASES, N_SLICES = 2, 2
ZF = "crunet_zf.xml"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=N_SLICES, n_phases=N_PHASES, n_coils=3, matrix=(40, 32),
                                      n_acs=12, acceleration=4), path)
    return path


@pytest.fixture(scope="module")
def stream(raw):
    """The wire bytes of a whole replay: CONFIG_FILE, HEADER, acquisitions, CLOSE."""
    from tests.gadgetron_harness import file_acquisitions

    xml, acqs = file_acquisitions(raw)
    name = ZF.encode()
    parts = [struct.pack("<H", 1) + name + b"\0" * (1024 - len(name)), struct.pack("<HI", 3, len(xml)) + xml]
    for a in acqs:
        parts.append(struct.pack("<H", 1008) + a.to_bytes())
    return parts, struct.pack("<H", 4)


def _server(**kwargs):
    kwargs.setdefault("idle_timeout", 30)
    return start_background(**kwargs)[0]


def _stop(srv):
    srv.shutdown(grace=0)
    srv.server_close()


def _read_until_close(sock, timeout=30):
    """Messages (id, body) up to the server's CLOSE; then whether the server closed the socket too."""
    sock.settimeout(timeout)
    f = sock.makefile("rb")
    out = []
    while True:
        head = f.read(2)
        if len(head) < 2:
            return out, False
        (mid,) = struct.unpack("<H", head)
        if mid == 4:
            break
        if mid == 5:
            (n,) = struct.unpack("<I", f.read(4))
            out.append((5, f.read(n).decode()))
        elif mid == 1022:
            out.append((1022, ismrmrd.Image.deserialize_from(f.read)))
        else:
            raise AssertionError(f"unexpected message {mid}")
    return out, f.read(1) == b""


# ------------------------------------------------------------------ refused connections close at once


@pytest.mark.parametrize("payload, expected", [
    (struct.pack("<H", 1) + b"nope.xml".ljust(1024, b"\0"), "unknown config 'nope.xml'"),
    (struct.pack("<HI", 2, 0xFFFFFFFF), "declares 4294967295 bytes; the limit is"),
    (struct.pack("<H", 1) + b"\xff\xfe.xml".ljust(1024, b"\0"), "CONFIG_FILE name is not UTF-8"),
    (struct.pack("<H", 777), "unknown message id 777"),
])
def test_refused_connection_is_closed_right_away(payload, expected):
    """TEXT + CLOSE at once, and the socket closed after a short linger, not at the idle timeout."""
    srv = _server(idle_timeout=60)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            t0 = time.monotonic()
            s.sendall(payload)  # and then nothing: the client waits, as a stuck client would
            msgs, eof = _read_until_close(s)
            assert s.recv(1) == b""  # the server closed its end
            elapsed = time.monotonic() - t0
        assert elapsed < 6, elapsed
        assert len(msgs) == 1 and msgs[0][0] == 5 and expected in msgs[0][1], msgs
        assert "\n" not in msgs[0][1]
    finally:
        _stop(srv)


def test_absurd_acquisition_size_is_refused_before_allocating(stream):
    parts, _ = stream
    head = ismrmrd.AcquisitionHeader()
    head.number_of_samples = 65535
    head.active_channels = 65535
    srv = _server(limits=Limits(max_message_bytes=1 << 20, idle_timeout=30))
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(parts[0] + parts[1] + struct.pack("<H", 1008) + bytes(head))
            msgs, _ = _read_until_close(s)
        declared = len(bytes(head)) + 8 * 65535 * 65535
        assert f"acquisition) declares {declared} bytes; the limit is 1048576 bytes" in msgs[0][1], msgs
    finally:
        _stop(srv)


def test_slow_client_hits_the_whole_message_deadline(stream):
    """1 byte per 50 ms: every read gets data, but the message does not arrive in time."""
    parts, _ = stream
    srv = _server(limits=Limits(message_timeout=1.0, idle_timeout=30))
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            t0 = time.monotonic()
            stop = threading.Event()

            def dribble():
                for b in parts[0]:
                    if stop.is_set():
                        return
                    try:
                        s.send(bytes([b]))
                    except OSError:
                        return
                    time.sleep(0.05)

            threading.Thread(target=dribble, daemon=True).start()
            msgs, _ = _read_until_close(s)
            stop.set()
            assert time.monotonic() - t0 < 5
        assert "CONFIG_FILE) not complete within 1 s" in msgs[0][1]
    finally:
        _stop(srv)


def test_connection_cap(stream):
    srv = _server(max_connections=1)
    try:
        first = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        time.sleep(0.3)  # first is being served (and waits for its config)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as second:
            msgs, _ = _read_until_close(second)
        assert "busy: 1 connections at once" in msgs[0][1]
        first.close()
        deadline = time.monotonic() + 10
        while srv.active() and time.monotonic() < deadline:
            time.sleep(0.05)
        run = StockClient(srv.port, timeout=10).info("gadgetron::info::python")
        assert run.responses == ["1"]
    finally:
        _stop(srv)


# ------------------------------------------------------------------ a client that vanishes


class SlowRecon:
    """Stands in for slice_to_images: runs (in Python) until interrupted or ``seconds`` pass."""

    def __init__(self, seconds=30.0):
        self.seconds = seconds
        self.calls, self.ended = [], []
        self.started = threading.Event()

    def __call__(self, s, cfg, start_index=1):
        self.calls.append(s.slice_index)
        self.started.set()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < self.seconds:
                time.sleep(0.02)
        finally:
            self.ended.append(time.monotonic())
        return [], None


@pytest.mark.parametrize("parallel", [1, 2])
@pytest.mark.parametrize("after_close", [True, False])
def test_vanished_client_cancels_its_slices(stream, monkeypatch, after_close, parallel):
    """Killed after its CLOSE (waiting for images) or while still sending: the slices in progress
    (one, or two side by side) are interrupted and no further slice starts."""
    slow = SlowRecon()
    monkeypatch.setattr(chain, "slice_to_images", slow)
    parts, close = stream
    srv = _server(parallel_slices=parallel)
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(b"".join(parts) + (close if after_close else b""))
        started = [0, 1] if parallel == 2 and after_close else [0]  # slice 1 is whole only after CLOSE
        deadline = time.monotonic() + 20
        while len(slow.calls) < len(started) and time.monotonic() < deadline:
            time.sleep(0.02)
        t0 = time.monotonic()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # as a killed process
        s.close()
        deadline = t0 + 10
        while (not slow.ended or srv.active()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.ended and max(slow.ended) - t0 < 3, "slice not interrupted"
        assert sorted(slow.calls) == started, "a slice started after the client was gone"
        assert len(slow.ended) == len(started)
        assert srv.active() == 0
    finally:
        _stop(srv)


# ------------------------------------------------------------------ stopping the server


@pytest.mark.parametrize("grace, finishing", [(0.3, False), (20.0, True)])
def test_stop_finishes_or_aborts_the_slice_and_tells_the_client(stream, monkeypatch, grace, finishing):
    slow = SlowRecon(seconds=1.0 if finishing else 30.0)
    monkeypatch.setattr(chain, "slice_to_images", slow)
    parts, close = stream
    srv = _server(parallel_slices=1)  # one slice at a time: slice 1 waits (two side by side: below)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(b"".join(parts) + close)
            assert slow.started.wait(20)
            srv.request_stop(grace)
            msgs, eof = _read_until_close(s)
        assert eof
        texts = [m for k, m in msgs if k == 5]
        assert len(texts) == 1 and "server shutting down" in texts[0]
        if finishing:
            assert "slice(s) 1 not reconstructed" in texts[0] and "interrupted" not in texts[0]
        else:
            assert "slice(s) 0, 1 not reconstructed (one interrupted)" in texts[0]
        assert slow.calls == [0]
        # no new connections once stopping
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).recv(1)
    finally:
        _stop(srv)


def test_sigterm_on_crunet_serve(stream, tmp_path):
    """The real command: SIGTERM -> each client gets TEXT + CLOSE, the process exits 0."""
    parts, _ = stream
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "crunet", "serve", "--port", "0", "--shutdown-grace", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        line = ""
        t0 = time.monotonic()
        while "listening on" not in line and time.monotonic() - t0 < 120:
            line = proc.stdout.readline()
        port = int(line.split("listening on ", 1)[1].split(";")[0].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(parts[0] + parts[1])  # config and header; the rest never comes
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            msgs, eof = _read_until_close(s)
        assert len(msgs) == 1 and "server shutting down" in msgs[0][1]
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "SIGTERM" in out and "crunet serve: stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ what replay leaves behind


def _fake_server(behaviour):
    """A one-connection server on loopback running ``behaviour(sock)``; returns its port."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)

    def run():
        conn, _ = lst.accept()
        try:
            behaviour(conn)
        finally:
            conn.close()
            lst.close()

    threading.Thread(target=run, daemon=True).start()
    return lst.getsockname()[1]


def _one_image():
    img = ismrmrd.Image.from_array(np.ones((1, 1, 4, 4), np.float32), image_series_index=1)
    img.attribute_string = ismrmrd.Meta({"ImageComment": "x"}).serialize()
    return img


def _image_bytes(img):
    from gadgets.writers import image_message

    return image_message(img)


def test_replay_without_close_writes_a_marked_partial_file(raw, tmp_path, capsys):
    def dies(conn):
        conn.settimeout(10)
        conn.recv(4096)
        conn.sendall(_image_bytes(_one_image()))
        time.sleep(0.2)  # then the "server" dies: no CLOSE

    out = tmp_path / "out.h5"
    port = _fake_server(dies)
    code = main(["replay", str(raw), str(out), "--port", str(port), "-c", ZF, "-G", "g"])
    err = capsys.readouterr()
    assert code == 1
    assert not out.exists() and partial_path(out).exists()
    with h5py.File(partial_path(out)) as f:
        assert f["g/image_1/data"].shape[0] == 1
        assert "without the server's CLOSE" in str(f["g"].attrs["crunet_replay_incomplete"][0])
    assert "crunet replay: connection ended without the server's CLOSE" in err.err
    assert "server:" not in err.err
    assert "INCOMPLETE" in err.out


def test_replay_marks_the_server_errors_in_the_output(raw, tmp_path, capsys):
    def complains(conn):
        conn.settimeout(10)
        conn.recv(4096)
        text = b"crunet: slice 1: broken"
        conn.sendall(_image_bytes(_one_image()) + struct.pack("<HI", 5, len(text)) + text + struct.pack("<H", 4))
        time.sleep(0.5)

    out = tmp_path / "out.h5"
    code = main(["replay", str(raw), str(out), "--port", str(_fake_server(complains)), "-c", ZF, "-G", "g"])
    err = capsys.readouterr().err
    assert code == 1 and "server: crunet: slice 1: broken" in err
    with h5py.File(out) as f:
        assert [v.decode() if isinstance(v, bytes) else v for v in f["g"].attrs["crunet_replay_errors"]] == [
            "crunet: slice 1: broken"]


def test_replay_complete_run_is_unmarked(raw, tmp_path):
    srv = _server()
    try:
        res = replay(raw, tmp_path / "ok.h5", port=srv.port, config=ZF, group="g")
    finally:
        _stop(srv)
    assert res.closed and not res.texts and not res.problems
    with h5py.File(tmp_path / "ok.h5") as f:
        assert "crunet_replay_errors" not in f["g"].attrs and "crunet_replay_incomplete" not in f["g"].attrs
    assert not partial_path(tmp_path / "ok.h5").exists()


def test_replay_gives_up_on_a_silent_server_after_the_idle_timeout(raw, tmp_path):
    """A server that accepts, reads everything and never answers: the replay ends after
    --timeout seconds of silence (not after an hour), keeping what arrived in a partial file."""
    done = threading.Event()

    def silent(conn):
        conn.settimeout(30)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        done.wait(30)

    def one_then_silent(conn):
        conn.settimeout(30)
        conn.recv(4096)
        conn.sendall(_image_bytes(_one_image()))
        done.wait(30)

    try:
        t0 = time.monotonic()
        res = replay(raw, tmp_path / "silent.h5", port=_fake_server(silent), config=ZF, group="g", timeout=1.0)
        assert time.monotonic() - t0 < 20
        assert not res.closed and any("no message" in p and "1 s" in p for p in res.problems)
        res = replay(raw, tmp_path / "one.h5", port=_fake_server(one_then_silent), config=ZF, group="g",
                     timeout=1.0)
        assert len(res.images) == 1 and not res.closed
        assert partial_path(tmp_path / "one.h5").exists() and not (tmp_path / "one.h5").exists()
    finally:
        done.set()


# ------------------------------------------------------------------ back-pressure


@pytest.fixture(scope="module")
def many_slices_raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults_many") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=6, n_phases=N_PHASES, n_coils=3, matrix=(40, 32), n_acs=12,
                                      acceleration=4), path)
    return path


def _replay_in_slice_order(raw, **server):
    """Replay ``raw`` (6 slices) through a server made with ``server``: every image back, in slice order."""
    srv = _server(**server)
    try:
        res = replay(raw, None, port=srv.port, config=ZF)
    finally:
        _stop(srv)
    assert res.closed and not res.texts and not res.problems
    assert [int(im.slice) for im in res.images] == [s for s in range(6) for _ in range(N_PHASES)]
    return res


def test_a_client_faster_than_the_reconstruction_is_held_to_the_slice_queue(many_slices_raw, monkeypatch):
    """With max_queued_slices = 1 the reader stops reading while a slice waits for the worker:
    at most one slice is ever queued, every image still arrives, in slice order."""
    import gadgets.worker as worker

    real = chain.slice_to_images

    def slow(s, cfg, start_index=1):
        time.sleep(0.15)
        return real(s, cfg, start_index=start_index)

    queued = []
    submit = worker.Worker.submit

    def recording_submit(self, job):
        submit(self, job)
        queued.append(self.pending())

    monkeypatch.setattr(chain, "slice_to_images", slow)
    monkeypatch.setattr(worker.Worker, "submit", recording_submit)
    _replay_in_slice_order(many_slices_raw, limits=Limits(idle_timeout=30, max_queued_slices=1))
    assert len(queued) == 6 and max(queued) <= 1, queued


def test_stop_while_the_reader_is_held_tells_the_client(many_slices_raw, monkeypatch):
    """A server stopping while a connection waits for room in its slice queue ends the wait: the
    client gets the usual TEXT naming the slices not reconstructed, then CLOSE."""
    slow = SlowRecon(seconds=30.0)
    monkeypatch.setattr(chain, "slice_to_images", slow)
    srv = _server(limits=Limits(idle_timeout=30, max_queued_slices=1), parallel_slices=1)
    try:
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("res", replay(many_slices_raw, None, port=srv.port,
                                                                            config=ZF, timeout=30)))
        t.start()
        assert slow.started.wait(20)
        time.sleep(0.5)  # slice 1 queued, the reader waiting with slice 2 assembled
        srv.request_stop(0.2)
        t.join(30)
        res = out["res"]
    finally:
        _stop(srv)
    assert res.closed and not res.images
    assert len(res.texts) == 1 and "server shutting down" in res.texts[0]
    # 0 interrupted, 1 queued, 2 assembled and waiting for room, 3 partly read
    assert "slice(s) 0, 1, 2, 3 not reconstructed (one interrupted)" in res.texts[0], res.texts
    assert slow.calls == [0]


# ------------------------------------------------------------------ slices side by side


def test_stop_interrupts_both_slices_side_by_side(stream, monkeypatch):
    slow = SlowRecon(seconds=30.0)
    monkeypatch.setattr(chain, "slice_to_images", slow)
    parts, close = stream
    srv = _server(parallel_slices=2)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(b"".join(parts) + close)
            deadline = time.monotonic() + 20
            while len(slow.calls) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            srv.request_stop(0.3)
            msgs, eof = _read_until_close(s)
    finally:
        _stop(srv)
    assert eof and sorted(slow.calls) == [0, 1]
    texts = [m for k, m in msgs if k == 5]
    assert len(texts) == 1 and "slice(s) 0, 1 not reconstructed (2 interrupted)" in texts[0], texts


def test_slices_side_by_side_go_out_in_order(many_slices_raw, monkeypatch):
    """Slice 0 takes longest, the others finish before it: every image still goes out in slice
    order, numbered 1, 2, ... in that order, and the later slices wait only for slice 0."""
    real = chain.slice_to_images
    ended = {}

    def uneven(s, cfg, start_index=1):
        time.sleep(1.0 if s.slice_index == 0 else 0.05)
        out = real(s, cfg, start_index=start_index)
        ended[s.slice_index] = time.monotonic()
        return out

    monkeypatch.setattr(chain, "slice_to_images", uneven)
    res = _replay_in_slice_order(many_slices_raw, parallel_slices=2)
    assert [int(im.image_index) for im in res.images] == list(range(1, 6 * N_PHASES + 1))
    assert [int(im.phase) for im in res.images] == [p for _ in range(6) for p in range(N_PHASES)]
    assert min(ended[s] for s in range(1, 6)) < ended[0], "no slice ran beside slice 0"


def test_image_indices_used_up_is_a_clear_failure_of_that_slice(raw, monkeypatch):
    """Images are numbered as they go out; a slice whose indices would pass 65535 is reported (TEXT
    naming it), not dropped silently."""
    init = chain.SliceReconstructor.__init__

    def near_the_end(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.next_index = 65535 - N_PHASES + 1  # slice 0's images fit, slice 1's do not

    monkeypatch.setattr(chain.SliceReconstructor, "__init__", near_the_end)
    srv = _server()
    try:
        res = replay(raw, None, port=srv.port, config=ZF)
    finally:
        _stop(srv)
    assert res.closed
    good = [im for im in res.images if im.image_series_index < 1000]  # not the failure markers
    assert [int(im.image_index) for im in good] == list(range(65535 - N_PHASES + 1, 65536))
    assert {int(im.slice) for im in good} == {0}
    assert len(res.texts) == 1 and "slice 1" in res.texts[0] and "image_index" in res.texts[0], res.texts
