"""``crunet serve``: a standalone server speaking Gadgetron's client protocol.

The stock ``gadgetron_ismrmrd_client -f raw.h5 -o out.h5 -c <config>`` works
against it unchanged. Per connection: CONFIG_FILE (id 1; the name of a chain in
``xml_configs/``) or CONFIG_SCRIPT (id 2; the chain XML), HEADER (3),
acquisitions (1008; waveforms 1026 are accepted and ignored), CLOSE (4). The
server plays the chain itself (:class:`gadgets.chain.ChainSession`: noise
adjustment, accumulate and trigger per slice, the same gadget code), streams
images (1022) back as slices complete, and always ends with CLOSE. Failures reach
the client as TEXT (5) followed by CLOSE — never ERROR (8), which makes the stock
client abort — and never a hang: reads time out after ``idle_timeout`` seconds.
Several clients are served at once (a thread each); loopback is the default bind.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading

import ismrmrd
from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolDeserializer, ProtocolSerializer

from gadgets import configs
from gadgets.chain import ChainError, ChainSession
from recon.errors import InputError
from recon.io.header import parse_header

log = logging.getLogger("crunet.server")
DEFAULT_PORT = 9002


class _Session:
    """One client connection."""

    def __init__(self, sock: socket.socket, idle_timeout: float):
        sock.settimeout(idle_timeout)
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.wfile = sock.makefile("wb")
        self.out = ProtocolSerializer(self.wfile)
        self.lock = threading.Lock()
        self.images = 0
        self.errors = 0
        self.stream = ProtocolDeserializer(self.rfile).deserialize()

    def send(self, item) -> None:
        with self.lock:
            if isinstance(item, ChainError):
                self.errors += 1
                self.out.serialize(item.message)  # str -> TEXT (5)
            else:
                self.images += 1
                self.out.serialize(item)
            self.wfile.flush()

    def text(self, message: str) -> None:
        log.warning("%s", message)
        self.send(ChainError(message))

    def run(self) -> None:
        message, drain = None, False
        try:
            self._protocol()
        except (socket.timeout, TimeoutError):
            message = "crunet serve: client idle for too long; closing"
        except (EOFError, ConnectionError, OSError) as exc:
            log.warning("client went away: %s", exc)
        except InputError as exc:
            message, drain = f"crunet serve: {exc}", True
        except Exception as exc:  # noqa: BLE001 - the client always gets TEXT + CLOSE
            log.exception("session failed")
            message = f"crunet serve: internal error: {type(exc).__name__}: {exc}"
        try:
            if message is not None:
                self._try(lambda: self.text(message))
            if drain:
                self._try(self._drain)
        finally:
            self._try(self.out.close)  # CLOSE (4)
            for f in (self.rfile, self.wfile):
                self._try(f.close)

    @staticmethod
    def _try(fn) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - the peer may be gone
            pass

    def _drain(self) -> None:
        """Read and discard the client's remaining messages up to its CLOSE.

        A client that is still sending (the stock client sends everything before it
        looks at replies) would otherwise hit a broken pipe and abort. After a
        framing error the stream cannot be parsed and the generator has ended.
        """
        for _ in self.stream:
            pass

    def _read_id(self) -> int:
        b = self.rfile.read(2)
        if len(b) < 2:
            raise EOFError("connection closed before CLOSE")
        return struct.unpack("<H", b)[0]

    def _protocol(self) -> None:
        stream = self.stream
        first = next(stream, None)
        if isinstance(first, ConfigFile):
            path = configs.resolve(str(first))
            settings = configs.gadget_settings(path.read_bytes(), source=path.name)
        elif isinstance(first, ConfigText):
            settings = configs.gadget_settings(str(first), source="CONFIG_SCRIPT")
        else:
            raise InputError(f"expected CONFIG_FILE (1) or CONFIG_SCRIPT (2) first, got {type(first).__name__}")
        msg_id = self._read_id()
        if msg_id != 3:
            raise InputError(f"expected HEADER (3) after the config, got message id {msg_id}")
        (length,) = struct.unpack("<I", self.rfile.read(4))
        header = parse_header(self.rfile.read(length), source="HEADER")
        session = ChainSession(header, settings)
        log.info("session: method %s, device %s", settings.method, session.recon.config.torch_device())
        waveforms = 0
        while True:
            try:
                item = next(stream)
            except StopIteration:  # CLOSE
                break
            except ValueError as exc:  # unknown message id
                raise InputError(f"{exc}; expected acquisitions (1008), waveforms (1026) or CLOSE (4)") from None
            if isinstance(item, ismrmrd.Acquisition):
                for out in session.acquisition(item):
                    self.send(out)
            elif isinstance(item, ismrmrd.Waveform):
                waveforms += 1
            else:
                raise InputError(f"unexpected message {type(item).__name__} in the acquisition stream")
        for out in session.close():
            self.send(out)
        log.info("session done: %d acquisitions, %d images, %d errors, %d waveforms ignored, "
                 "%d auxiliary lines ignored", session.received, self.images, self.errors, waveforms,
                 session.ignored)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        log.info("client %s connected", self.client_address)
        _Session(self.request, self.server.idle_timeout).run()


class CrunetServer(socketserver.ThreadingTCPServer):
    """Threaded TCP server; ``serve_forever()`` to run, ``shutdown()`` to stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, idle_timeout: float = 600.0):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.idle_timeout = idle_timeout
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


def start_background(host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 600.0
                     ) -> tuple[CrunetServer, threading.Thread]:
    """Start a server in a daemon thread (port 0 picks a free port); for tests and the demo."""
    server = CrunetServer(host, port, idle_timeout)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="crunet-serve")
    thread.start()
    return server, thread
