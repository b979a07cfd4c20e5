"""Gadgetron's client protocol: message ids, limits, and the one reader of its messages.

Messages (uint16 id, little-endian, as Gadgetron 4's ``core/MessageID.h`` and the
stock client define them):

| id | name | body |
|---|---|---|
| 1 | CONFIG_FILE | 1024 bytes, the chain's file name, NUL-padded |
| 2 | CONFIG_SCRIPT | uint32 length + chain XML |
| 3 | HEADER | uint32 length + ISMRMRD XML header |
| 4 | CLOSE | nothing |
| 5 | TEXT | uint32 length + text |
| 6 | QUERY | uint64 reserved (0), uint64 correlation id, uint64 length + query |
| 7 | RESPONSE | uint64 correlation id, uint64 length + answer (server to client) |
| 8 | ERROR | uint64 length + text (to Gadgetron from an external gadget; the stock client aborts on it) |
| 1008 | acquisition | ISMRMRD acquisition header, trajectory, data |
| 1019 | dependency query | uint64 length + ISMRMRD Meta XML (server to client) |
| 1022 | image | ISMRMRD image header, uint64 length + attributes, data (server to client) |
| 1026 | waveform | ISMRMRD waveform header, uint32 data |

Every message of this protocol that :mod:`gadgets` reads is read by :class:`MessageReader`,
which returns typed messages: the dataclasses below, ``ismrmrd.Acquisition``,
``ismrmrd.Waveform`` and ``ismrmrd.Image``. The server (:mod:`gadgets.session`, MRD App
clients included) reads what a client sends (:data:`FROM_CLIENT`, the default); the
replay client (:mod:`gadgets.client`: the images and texts of a replay, the dependency
query's answer) reads what a server sends (:data:`FROM_SERVER`). Any other id is a
:class:`ProtocolError`. The bytes of the messages sent are built in
:mod:`gadgets.writers`. (The external gadget's connection to Gadgetron is the
``gadgetron`` package's, hardened in :mod:`gadgets.external`.)

:class:`MessageReader` never trusts a declared size: every message must fit
:attr:`Limits.max_message_bytes` (checked before anything is allocated) and
arrive whole within :attr:`Limits.message_timeout` seconds of its first byte (a
deadline for the whole message, not per read), and the next message must start
within :attr:`Limits.idle_timeout` seconds. It waits with ``select`` in short
steps, so a server that is stopping is noticed at once.
"""

from __future__ import annotations

import ctypes
import io
import math
import select
import socket
import struct
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import ismrmrd
import numpy as np
from ismrmrd.image import get_dtype_from_data_type

from recon.errors import InputError

CONFIG_FILE, CONFIG_SCRIPT, HEADER, CLOSE, TEXT, QUERY, RESPONSE, ERROR = 1, 2, 3, 4, 5, 6, 7, 8
ACQUISITION, DEPENDENCY_QUERY, IMAGE, WAVEFORM = 1008, 1019, 1022, 1026
NAMES = {CONFIG_FILE: "CONFIG_FILE", CONFIG_SCRIPT: "CONFIG_SCRIPT", HEADER: "HEADER", CLOSE: "CLOSE",
         TEXT: "TEXT", QUERY: "QUERY", RESPONSE: "RESPONSE", ERROR: "ERROR", ACQUISITION: "acquisition",
         DEPENDENCY_QUERY: "dependency query", IMAGE: "image", WAVEFORM: "waveform"}
CONFIG_FILE_BYTES = 1024
MiB = 1 << 20
_ACQ_HEADER_BYTES = ctypes.sizeof(ismrmrd.AcquisitionHeader)
_WAVEFORM_HEADER_BYTES = ctypes.sizeof(ismrmrd.WaveformHeader)
_IMAGE_HEADER_BYTES = ctypes.sizeof(ismrmrd.ImageHeader)
#: what a client sends (the server's reader) and what a server sends back (the replay client's reader)
FROM_CLIENT = frozenset({CONFIG_FILE, CONFIG_SCRIPT, HEADER, CLOSE, TEXT, QUERY, ACQUISITION, WAVEFORM})
FROM_SERVER = frozenset({CLOSE, TEXT, RESPONSE, ERROR, DEPENDENCY_QUERY, IMAGE})


def name(msg_id: int) -> str:
    return f"{msg_id} ({NAMES[msg_id]})" if msg_id in NAMES else str(msg_id)


@dataclass(frozen=True)
class Limits:
    """What one connection may cost the side that reads it."""

    #: largest message body accepted (bytes); a real acquisition is well under 8 MiB
    max_message_bytes: int = 64 * MiB
    #: seconds from a message's first byte to its last
    message_timeout: float = 60.0
    #: seconds the reader waits for the next message (the server's sessions: also for a send to complete)
    idle_timeout: float = 600.0
    #: the server's sessions: slices waiting for reconstruction before the connection stops reading
    #: (back-pressure: the client's sends wait in TCP until a queued slice starts), so a client
    #: that sends faster than the machine reconstructs holds at most this many slices in memory
    max_queued_slices: int = 4


# ----------------------------------------------------------------- what the reader returns


@dataclass(frozen=True)
class ConfigFile:
    name: str


@dataclass(frozen=True)
class ConfigScript:
    xml: str


@dataclass(frozen=True)
class Header:
    xml: bytes


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Query:
    reserved: int
    correlation_id: int
    query: str


@dataclass(frozen=True)
class Response:
    correlation_id: int
    answer: str


@dataclass(frozen=True)
class Error:
    text: str


@dataclass(frozen=True)
class DependencyQuery:
    """The answer to a dependency query: the ISMRMRD Meta of a stored noise measurement."""

    meta: dict


# ----------------------------------------------------------------- errors


class ProtocolError(InputError):
    """The peer broke the protocol or a limit (the server reports it as TEXT, then closes)."""


class MessageTimeout(ProtocolError):
    """A message did not arrive whole in time, or no message came for too long."""


class IdleTimeout(MessageTimeout):
    """No message started within :attr:`Limits.idle_timeout`."""


class PeerGone(ConnectionError):
    """The peer closed or reset the connection without CLOSE."""


class Stopped(Exception):
    """The server is stopping: no further message is read."""


# ----------------------------------------------------------------- reading


class MessageReader:
    """Reads one message at a time from a connected socket, within :class:`Limits`.

    :meth:`next` returns the next message; iterating yields the messages up to and
    including :class:`Close`. ``accept``: the message ids this side may receive
    (:data:`FROM_CLIENT` or :data:`FROM_SERVER`); ``peer`` names the other side in
    messages. ``stop`` (an Event) set by the server ends the wait for the next message
    with :class:`Stopped`. The socket keeps its own timeout for sends; reads wait in
    ``select`` so that the deadlines here are the only ones that apply.
    """

    POLL = 0.25

    def __init__(self, sock: socket.socket, limits: Limits = Limits(), stop: threading.Event | None = None, *,
                 accept: frozenset[int] = FROM_CLIENT, peer: str = "client"):
        self.sock = sock
        self.limits = limits
        self.stop = stop or threading.Event()
        self.accept = accept
        self.peer = peer
        self._buf = bytearray()
        self._deadline = 0.0
        self._what = ""
        self.bytes_read = 0

    # -- low level

    def _recv(self, wait: float) -> bool:
        """Receive what is there within ``wait`` seconds into the buffer; False if nothing came."""
        try:
            ready, _, _ = select.select([self.sock], [], [], max(wait, 0.0))
        except (OSError, ValueError) as exc:
            raise PeerGone(f"connection closed ({exc})") from None
        if not ready:
            return False
        try:
            chunk = self.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError, socket.timeout):
            return False
        except OSError as exc:
            raise PeerGone(f"connection lost ({exc})") from None
        if not chunk:
            raise PeerGone(f"{self.peer} closed the connection without CLOSE")
        self._buf += chunk
        self.bytes_read += len(chunk)
        return True

    def _exactly(self, n: int) -> bytes:
        """``n`` bytes of the current message, before its deadline."""
        while len(self._buf) < n:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise MessageTimeout(f"{self._what} not complete within {self.limits.message_timeout:g} s "
                                     f"(a whole message must arrive within that time)")
            self._recv(min(left, self.POLL))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _wait_for_message(self) -> None:
        """Wait (up to the idle timeout) until a message starts; honours ``stop``."""
        end = time.monotonic() + self.limits.idle_timeout
        while not self._buf:
            if self.stop.is_set():
                raise Stopped()
            left = end - time.monotonic()
            if left <= 0:
                raise IdleTimeout(f"{self.peer} idle: no message for {self.limits.idle_timeout:g} s")
            self._recv(min(left, self.POLL))
        if self.stop.is_set():
            raise Stopped()

    def _check_size(self, nbytes: int) -> None:
        if nbytes > self.limits.max_message_bytes:
            raise ProtocolError(f"{self._what} declares {nbytes} bytes; the limit is "
                                f"{self.limits.max_message_bytes} bytes ({self.limits.max_message_bytes / MiB:g} MiB)")

    def _sized(self, fmt: str) -> bytes:
        (n,) = struct.unpack(fmt, self._exactly(struct.calcsize(fmt)))
        self._check_size(n)
        return self._exactly(n)

    def _utf8(self, raw: bytes, what: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{what} is not UTF-8 text (byte {exc.start})") from None

    # -- messages

    def next(self):
        """The next message: a dataclass above, an ``ismrmrd.Acquisition``, ``ismrmrd.Waveform`` or ``ismrmrd.Image``.

        Raises ProtocolError (bad message or limit), MessageTimeout (IdleTimeout), PeerGone or Stopped.
        """
        self._wait_for_message()
        self._deadline = time.monotonic() + self.limits.message_timeout
        self._what = "message id"
        (msg_id,) = struct.unpack("<H", self._exactly(2))
        self._what = f"message {name(msg_id)}"
        if msg_id not in self.accept:
            if msg_id in NAMES:
                raise ProtocolError(f"unexpected message {name(msg_id)}: not one a {self.peer} sends")
            raise ProtocolError(f"unknown message id {msg_id}")
        return _BODY[msg_id](self)

    def __iter__(self):
        """The messages up to and including the peer's :class:`Close`."""
        while True:
            msg = self.next()
            yield msg
            if isinstance(msg, Close):
                return

    def _config_file(self) -> ConfigFile:
        raw = self._exactly(CONFIG_FILE_BYTES).split(b"\0", 1)[0]
        return ConfigFile(self._utf8(raw, "the CONFIG_FILE name").strip())

    # MRD App clients (python-ismrmrd-server's connection.py) NUL-terminate every text they send.

    def _config_script(self) -> ConfigScript:
        return ConfigScript(self._utf8(self._sized("<I").rstrip(b"\0"), "the CONFIG_SCRIPT"))

    def _header(self) -> Header:
        return Header(self._sized("<I").rstrip(b"\0"))

    def _text(self) -> Text:
        return Text(self._utf8(self._sized("<I").rstrip(b"\0"), "a TEXT message"))

    def _query(self) -> Query:
        reserved, corr = struct.unpack("<QQ", self._exactly(16))
        return Query(reserved, corr, self._utf8(self._sized("<Q"), "the QUERY"))

    def _acquisition(self) -> ismrmrd.Acquisition:
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(self._exactly(_ACQ_HEADER_BYTES))
        ns, nc, nt = int(head.number_of_samples), int(head.active_channels), int(head.trajectory_dimensions)
        self._check_size(_ACQ_HEADER_BYTES + 4 * ns * nt + 8 * ns * nc)
        traj = np.frombuffer(self._exactly(4 * ns * nt), np.float32).reshape(ns, nt)
        data = np.frombuffer(self._exactly(8 * ns * nc), np.complex64).reshape(nc, ns)
        return ismrmrd.Acquisition(head, data.copy(), traj.copy())

    def _response(self) -> Response:
        (corr,) = struct.unpack("<Q", self._exactly(8))
        return Response(corr, self._utf8(self._sized("<Q"), "the RESPONSE"))

    def _error(self) -> Error:
        return Error(self._utf8(self._sized("<Q").rstrip(b"\0"), "an ERROR message"))

    def _dependency_query(self) -> DependencyQuery:
        xml = self._utf8(self._sized("<Q").rstrip(b"\0"), "the dependency query answer")
        try:
            return DependencyQuery(dict(ismrmrd.Meta.deserialize(xml)))
        except (ET.ParseError, AssertionError, AttributeError, TypeError) as exc:
            raise ProtocolError(f"the dependency query answer is not ISMRMRD Meta XML ({exc})") from None

    def _image(self) -> ismrmrd.Image:
        head_bytes = self._exactly(_IMAGE_HEADER_BYTES)
        head = ismrmrd.ImageHeader.from_buffer_copy(head_bytes)
        try:
            itemsize = get_dtype_from_data_type(int(head.data_type)).itemsize
        except TypeError:
            raise ProtocolError(f"{self._what}: unknown image data type {int(head.data_type)}") from None
        n_attr_bytes = self._exactly(8)
        (n_attr,) = struct.unpack("<Q", n_attr_bytes)
        n_data = int(head.channels) * math.prod(int(m) for m in head.matrix_size) * itemsize
        self._check_size(_IMAGE_HEADER_BYTES + 8 + n_attr + n_data)
        whole = io.BytesIO(head_bytes + n_attr_bytes + self._exactly(n_attr) + self._exactly(n_data))
        try:
            return ismrmrd.Image.deserialize_from(whole.read)
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{self._what}: the attributes are not UTF-8 text (byte {exc.start})") from None

    def _waveform(self) -> ismrmrd.Waveform:
        head = ismrmrd.WaveformHeader.from_buffer_copy(self._exactly(_WAVEFORM_HEADER_BYTES))
        n = int(head.channels) * int(head.number_of_samples)
        self._check_size(_WAVEFORM_HEADER_BYTES + 4 * n)
        data = np.frombuffer(self._exactly(4 * n), np.uint32).reshape(int(head.channels), int(head.number_of_samples))
        return ismrmrd.Waveform(head, data.copy())

    def watch(self, seconds: float) -> None:
        """After the client's CLOSE: wait up to ``seconds``; PeerGone if it goes away (data is dropped)."""
        self._recv(seconds)
        self._buf.clear()

    def discard(self, seconds: float, max_bytes: int = 64 * MiB) -> None:
        """Read and drop whatever the client still sends, until EOF, ``seconds`` or ``max_bytes``."""
        end = time.monotonic() + seconds
        start = self.bytes_read
        try:
            while time.monotonic() < end and self.bytes_read - start < max_bytes:
                self._buf.clear()
                self._recv(min(end - time.monotonic(), self.POLL))
        except PeerGone:
            pass
        self._buf.clear()


def _close(_reader: MessageReader) -> Close:
    return Close()


_BODY = {
    CONFIG_FILE: MessageReader._config_file,
    CONFIG_SCRIPT: MessageReader._config_script,
    HEADER: MessageReader._header,
    CLOSE: _close,
    TEXT: MessageReader._text,
    QUERY: MessageReader._query,
    RESPONSE: MessageReader._response,
    ERROR: MessageReader._error,
    ACQUISITION: MessageReader._acquisition,
    DEPENDENCY_QUERY: MessageReader._dependency_query,
    IMAGE: MessageReader._image,
    WAVEFORM: MessageReader._waveform,
}
