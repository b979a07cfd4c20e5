"""Bounded fuzz of the server's stream reader: damaged copies of a valid client stream.

From a fixed seed: byte flips, truncations, random message ids, inserted garbage, and
damaged length and size fields (CONFIG/HEADER/TEXT lengths, acquisition samples,
channels and trajectory dimensions). Reader level (300 cases over a socket pair):
each case ends in a message sequence or a ProtocolError / PeerGone, within its time
and memory bound. Session level (a sample over TCP against `crunet serve`): each
connection ends with the server's CLOSE after at most one-line TEXT messages, never
an internal error of the server, and the server still serves afterwards.
"""

from __future__ import annotations

import socket
import struct
import time

import ismrmrd
import numpy as np
import pytest

from gadgets.protocol import Close, Limits, MessageReader, PeerGone, ProtocolError
from gadgets.server import start_background
from recon.simulate.cine import SimulationConfig, simulate_to_file
from tests.conftest import FedSocket
from tests.gadgetron_harness import StockClient, file_acquisitions

SEED = 20261130
N_READER_CASES = 300
N_SESSION_CASES = 24
LIMITS = Limits(max_message_bytes=4 << 20, message_timeout=1.0, idle_timeout=1.0)
_ACQ_HEAD = len(bytes(ismrmrd.AcquisitionHeader()))
#: byte offsets inside an acquisition header of number_of_samples, active_channels, trajectory_dimensions
_SIZE_FIELDS = {name: getattr(ismrmrd.AcquisitionHeader, name).offset
                for name in ("number_of_samples", "active_channels", "trajectory_dimensions")}


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    """The messages of a small valid replay, as (id, bytes) in order."""
    path = tmp_path_factory.mktemp("fuzz") / "raw.h5"
    simulate_to_file(SimulationConfig(n_slices=1, n_phases=2, n_coils=2, matrix=(24, 16), n_acs=8,
                                      acceleration=4), path)
    xml, acqs = file_acquisitions(path)
    name = b"crunet_zf.xml"
    out = [(1, struct.pack("<H", 1) + name.ljust(1024, b"\0")), (3, struct.pack("<HI", 3, len(xml)) + xml)]
    out.append((5, struct.pack("<HI", 5, 9) + b'{"a": 1}\n'))
    out += [(1008, struct.pack("<H", 1008) + a.to_bytes()) for a in acqs]
    out.append((4, struct.pack("<H", 4)))
    return out


def _damage(rng: np.random.Generator, messages) -> bytes:
    parts = [bytearray(m) for _, m in messages]
    kind = rng.integers(7)
    i = int(rng.integers(len(parts)))
    p = parts[i]
    if kind == 0:  # byte flips anywhere in one message
        for _ in range(int(rng.integers(1, 8))):
            p[int(rng.integers(len(p)))] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncation of the stream
        return bytes(b"".join(parts))[: int(rng.integers(1, sum(map(len, parts))))]
    elif kind == 2:  # a random message id
        p[0:2] = struct.pack("<H", int(rng.choice([0, 6, 7, 8, 999, 1022, 1050, 65535, rng.integers(65536)])))
    elif kind == 3:  # garbage inserted between messages
        parts.insert(i, bytearray(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()))
    elif kind == 4:  # a length field of CONFIG/HEADER/TEXT
        j = next(k for k, (mid, _) in enumerate(messages) if mid in (3, 5))
        parts[j][2:6] = struct.pack("<I", int(rng.choice([0, 1, 2 ** 31, 2 ** 32 - 1, rng.integers(2 ** 32)])))
    elif kind == 5:  # an acquisition's size fields
        j = int(rng.integers(3, len(parts) - 1))
        field = rng.choice(list(_SIZE_FIELDS))
        off = 2 + _SIZE_FIELDS[field]
        parts[j][off:off + 2] = struct.pack("<H", int(rng.choice([0, 1, 3, 255, 4096, 65535])))
    else:  # a message duplicated (second header or config)
        parts.insert(i, bytearray(parts[int(rng.integers(2))]))
    return bytes(b"".join(parts))


def _read_all(data: bytes) -> tuple[str, float]:
    """Feed ``data`` and EOF to a reader; how it ended and how long it took."""
    t0 = time.monotonic()
    with FedSocket(data) as sock:
        try:
            reader = MessageReader(sock, LIMITS)
            for _ in range(10_000):
                if isinstance(reader.next(), Close):
                    return "close", time.monotonic() - t0
            return "too many messages", time.monotonic() - t0
        except (ProtocolError, PeerGone) as exc:
            return type(exc).__name__, time.monotonic() - t0


def test_reader_survives_damaged_streams(messages):
    rng = np.random.default_rng(SEED)
    outcomes = {}
    for case in range(N_READER_CASES):
        data = _damage(rng, messages)
        how, seconds = _read_all(data)
        assert how in ("close", "ProtocolError", "MessageTimeout", "PeerGone"), (case, how)
        assert seconds < LIMITS.message_timeout + 1.0, (case, seconds)
        outcomes[how] = outcomes.get(how, 0) + 1
    assert outcomes.get("ProtocolError", 0) > 20 and outcomes.get("PeerGone", 0) > 20, outcomes


@pytest.fixture(scope="module")
def server():
    srv, _ = start_background(limits=LIMITS)
    yield srv
    srv.shutdown(grace=0)
    srv.server_close()


def test_sessions_survive_damaged_streams(messages, server):
    rng = np.random.default_rng(SEED + 1)
    for case in range(N_SESSION_CASES):
        data = _damage(rng, messages)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            try:
                s.sendall(data)
            except OSError:
                pass  # refused and closed while we were still sending
            f = s.makefile("rb")
            texts, closed = [], False
            while True:
                head = f.read(2)
                if len(head) < 2:
                    break
                (mid,) = struct.unpack("<H", head)
                if mid == 4:
                    closed = True
                    break
                if mid == 5:
                    (n,) = struct.unpack("<I", f.read(4))
                    texts.append(f.read(n).decode())
                elif mid == 1022:
                    ismrmrd.Image.deserialize_from(f.read)
                else:
                    raise AssertionError(f"case {case}: unexpected message {mid}")
        assert closed, (case, texts)
        for t in texts:
            assert "\n" not in t and not t.startswith("crunet serve: internal error"), (case, t)
    assert StockClient(server.port, timeout=10).info("gadgetron::info::python").responses == ["1"]
