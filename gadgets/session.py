"""One client connection of ``crunet serve``: the protocol of a session, from config to CLOSE.

The stock ``gadgetron_ismrmrd_client`` works against it unchanged, in each of its
modes, answered as Gadgetron 4 answers them (apps/gadgetron/connection/*.cpp):

* **Replay** (``-f raw.h5 -c <chain>``): CONFIG_FILE (1; the name of a chain in
  ``xml_configs/``) or CONFIG_SCRIPT (2; the chain XML), HEADER (3), acquisitions
  (1008) and waveforms (1026, ignored), CLOSE (4). The server plays the chain itself
  (:mod:`gadgets.chain`: noise adjustment, a bucket per slice on a change of
  ``idx.slice`` or at the end of the stream, the same gadget code) and streams the
  images (1022) back as slices complete. A failed slice is sent as TEXT (5) and,
  with ``error_reporting=image`` (the default), as the marker image the gadget
  sends under Gadgetron.
* **Noise dependencies** (:mod:`gadgets.dependencies`): a stream's noise scan is
  stored under its ``measurementID`` (a noise-only stream with
  ``-c default_measurement_dependencies.xml`` or any crunet chain); a later stream
  whose header depends on it is whitened with it. The client's dependency query (a
  CONFIG_SCRIPT naming NoiseSummaryGadget, then CLOSE) gets message 1019 with the
  noise statistics, or ``status=failed``.
* ``-q`` (a config, then CLOSE, no header): the chain runs on nothing; CLOSE.
* ``-Q <query>`` (QUERY 6, then CLOSE): RESPONSE (7) from :mod:`gadgets.queries`.

MRD App clients (python-ismrmrd-server's ``client.py``, FIRE, OpenRecon) work too:
their NUL-terminated header and texts are read, a config name may come without
``.xml`` (``crunet``), and a TEXT (5) right after the header is their JSON
"configAdditional", whose parameters override the chain's gadget settings or name
the chain (:mod:`gadgets.mrdapp`). An unknown config name with ``.xml`` is refused
at once; one without an extension (``invertcontrast``, ``client.py``'s default) only
after the header and that TEXT, since the JSON may name a chain. The settings are
validated once, after the JSON, by the validator of the XML properties
(:func:`gadgets.configs.configure`).

Every message is read by :class:`gadgets.protocol.MessageReader`, within the
server's limits. Failures reach the client as TEXT, then CLOSE; a refused
connection (bad chain name, broken limit, protocol error) is closed after a short
linger (:data:`LINGER`).

Each connection has a reader (its own thread) and its slices
(:class:`gadgets.slicejobs.SliceJobs`: a bounded queue with back-pressure, slices
reconstructed side by side in a :class:`gadgets.worker.Worker`, images sent in slice
order). The reader keeps reading while slices reconstruct, so a client that goes
away (connection closed or reset without CLOSE, or a failed send) is seen at once
and the work for its slices is cancelled; while the reader waits for room in the
queue, a client that goes away is seen at the next send or read. When the server
stops, the slices in progress may finish within the grace period (else they are
interrupted), the slices not started are dropped, and the client is told which
slices were not reconstructed (TEXT) before its CLOSE: those queued, the one
waiting for room, and the one partly read.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Protocol

import ismrmrd

from gadgets.chain import ChainAssembler, ChainError, NoiseAdjust, SliceReconstructor
from gadgets.configs import Chain, chain_from_name, chain_from_xml, configure
from gadgets.dependencies import NoiseStore, measurement_id, summary_meta
from gadgets.mrdapp import ConfigAdditional, parse_config_additional
from gadgets.protocol import (Close, ConfigFile, ConfigScript, Header, Limits, MessageReader, PeerGone, ProtocolError,
                              Query, Stopped, Text)
from gadgets.queries import answer
from gadgets.slicejobs import SliceJobs
from gadgets.worker import Running
from gadgets.writers import close_message, dependency_query_message, image_message, response_message, text_message
from recon.errors import InputError
from recon.io.header import parse_header
from recon.scheduler import runner_for

log = logging.getLogger("crunet.server")
#: seconds a refused client may keep sending after our CLOSE before the socket is closed
LINGER = 2.0


def _interrupted(n: int) -> str:
    return "" if n == 0 else " (one interrupted)" if n == 1 else f" ({n} interrupted)"


def _kind(msg) -> str:
    return type(msg).__name__


class Host(Protocol):
    """What a session needs of the server that runs it (:class:`gadgets.server.CrunetServer`)."""

    limits: Limits
    store: NoiseStore
    parallel_slices: int | None
    stopping: threading.Event
    grace_deadline: float
    running: Running


class Session:
    """One client connection: reader (this thread) and reconstruction worker.

    ``server`` gives the connection's :class:`~gadgets.protocol.Limits` (``limits``), the
    stop event (``stopping``) and its grace period (``grace_deadline``), and the noise
    store (``store``).
    """

    def __init__(self, sock: socket.socket, server: Host, peer=None):
        self.server = server
        self.sock = sock
        self.peer = peer
        sock.settimeout(server.limits.message_timeout)  # bounds each send; reads wait in select
        self.reader = MessageReader(sock, server.limits, server.stopping)
        self._send_lock = threading.Lock()
        self.sealed = False  # CLOSE sent: nothing more goes out
        self.client_closed = False  # the client's CLOSE arrived
        self.lost: str | None = None  # why the client is gone
        self.jobs: SliceJobs | None = None  # the slices, once a reconstruction chain has its header
        self._unread = None  # a message read ahead (after the header, when it was not the JSON TEXT)
        self.images = self.errors = self.waveforms = 0

    # ------------------------------------------------------------ sending

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self.sealed:
                raise OSError("connection already closed by the server")
            self.sock.sendall(data)

    def send_image(self, image: ismrmrd.Image) -> None:
        self._send(image_message(image))
        self.images += 1

    def send_text(self, text: str) -> None:
        log.warning("%s", text)
        self._send(text_message(text))

    # ------------------------------------------------------------ the connection

    def run(self) -> None:
        message = None
        try:
            self._protocol()
        except Stopped:
            message = self._stopped()
        except PeerGone as exc:
            self._gone(str(exc))
        except ProtocolError as exc:
            message = f"crunet serve: {exc}; closing the connection"
        except InputError as exc:
            message = f"crunet serve: {exc}"
        except OSError as exc:  # a send failed: the client is gone
            self._gone(f"sending failed ({exc})")
        except Exception as exc:  # noqa: BLE001 - the client always gets TEXT + CLOSE
            log.exception("session failed")
            message = f"crunet serve: internal error: {type(exc).__name__}: {exc}"
        self._end(message)

    def _end(self, message: str | None) -> None:
        """Stop the worker, then (client still there) TEXT + CLOSE, linger if refused, close."""
        if self.jobs is not None and not self.jobs.worker.wait(0):
            self.jobs.worker.cancel()
            self.jobs.worker.wait(10)
        try:
            if self.lost is None:
                if message is not None:
                    self.send_text(message)
                with self._send_lock:
                    self.sealed = True
                    self.sock.sendall(close_message())
                if message is not None and not self.client_closed:
                    self.sock.shutdown(socket.SHUT_WR)
                    self.reader.discard(LINGER)
        except OSError:
            pass
        finally:
            self.sealed = True
            self.sock.close()

    def _gone(self, reason: str) -> None:
        self.lost = self.lost or reason
        log.warning("client %s went away (%s)", self.peer, self.lost)
        if self.jobs is not None:
            self.jobs.worker.cancel()
            self.jobs.worker.wait(10)
            left = self.jobs.not_reconstructed()
            log.warning("client %s: work cancelled; %d slice(s) not reconstructed%s", self.peer, len(left),
                        _interrupted(self.jobs.worker.interrupted))

    def _next(self):
        if self.lost is not None:
            raise PeerGone(self.lost)
        if self._unread is not None:
            msg, self._unread = self._unread, None
            return msg
        return self.reader.next()

    def _answer(self, q: Query) -> None:
        if q.reserved:
            raise ProtocolError("Unsupported value in reserved bytes of the QUERY")
        self._send(response_message(q.correlation_id, answer(q.query)))

    def _protocol(self) -> None:
        chain = self._read_config()
        if chain is None:  # CLOSE before a config (e.g. after -Q's QUERY)
            return
        header = self._read_header()
        chain = configure(chain, self._config_additional() if header is not None else None)
        {"query": self._serve_query, "noise": self._serve_noise, "recon": self._serve_recon}[chain.kind](
            chain, header)

    def _config_additional(self) -> ConfigAdditional | None:
        """The MRD App JSON parameters: a TEXT right after the header (else that message is kept for later)."""
        msg = self._next()
        if not isinstance(msg, Text):
            self._unread = msg
            return None
        log.info("configAdditional: %s", " ".join(msg.text.split())[:2000])
        return parse_config_additional(msg.text)

    def _read_config(self) -> Chain | None:
        while True:
            msg = self._next()
            if isinstance(msg, Query):
                self._answer(msg)
            elif isinstance(msg, Close):
                self.client_closed = True
                return None
            elif isinstance(msg, ConfigFile):
                return chain_from_name(msg.name)
            elif isinstance(msg, ConfigScript):
                return chain_from_xml(msg.xml, "CONFIG_SCRIPT")
            elif isinstance(msg, Header):
                raise ProtocolError("received the ISMRMRD header (3) before the config")
            else:
                raise ProtocolError(f"expected CONFIG_FILE (1) or CONFIG_SCRIPT (2) first, got {_kind(msg)}")

    def _read_header(self) -> bytes | None:
        """The HEADER, or None when CLOSE comes first (``-q``: the chain runs on nothing)."""
        while True:
            msg = self._next()
            if isinstance(msg, Query):
                self._answer(msg)
            elif isinstance(msg, Text):
                log.info("client text: %s", msg.text[:500])
            elif isinstance(msg, Header):
                return msg.xml
            elif isinstance(msg, Close):
                self.client_closed = True
                return None
            elif isinstance(msg, (ConfigFile, ConfigScript)):
                raise ProtocolError("received a second config; only one is allowed")
            else:
                raise ProtocolError(f"expected HEADER (3) after the config, got {_kind(msg)}")

    def _stream(self, on_acquisition) -> None:
        """Messages after the header, up to the client's CLOSE."""
        while True:
            msg = self._next()
            if isinstance(msg, ismrmrd.Acquisition):
                on_acquisition(msg)
            elif isinstance(msg, ismrmrd.Waveform):
                self.waveforms += 1
            elif isinstance(msg, Close):
                self.client_closed = True
                return
            elif isinstance(msg, Query):
                self._answer(msg)
            elif isinstance(msg, Text):
                log.info("client text: %s", msg.text[:500])
            elif isinstance(msg, Header):
                raise ProtocolError("received a second ISMRMRD header; only one is allowed")
            else:
                raise ProtocolError("received a second config; only one is allowed")

    # ------------------------------------------------------------ the three chains

    def _serve_query(self, chain: Chain, header: bytes | None) -> None:
        if header is not None:
            self._stream(lambda acq: None)  # NoiseSummaryGadget ignores data
        record = self.server.store.get(chain.target) if chain.target else None
        log.info("dependency query for '%s': %s", chain.target, "found" if record is not None else "not stored")
        self._send(dependency_query_message(summary_meta(record)))

    def _serve_noise(self, chain: Chain, header: bytes | None) -> None:
        if header is None:
            return
        h = parse_header(header, source="HEADER")
        noise = NoiseAdjust(h, enabled=True, store=None)
        self._stream(lambda acq: noise.noise(acq) if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) else None)
        mid = measurement_id(h)
        if not noise.has_noise:
            log.info("noise chain %s: the stream has no noise lines; nothing stored", chain.source)
            return
        if not mid:
            self.send_text("crunet serve: noise measurement not stored: its header has no measurementID")
            return
        try:
            self.server.store.put(mid, noise.record())
        except InputError as exc:
            self.send_text(f"crunet serve: noise measurement '{mid}' not stored: {exc}")

    def _serve_recon(self, chain: Chain, header: bytes | None) -> None:
        if header is None:
            return  # -q: nothing to reconstruct
        h = parse_header(header, source="HEADER")
        recon = SliceReconstructor(h, chain.settings)
        assembler = ChainAssembler(h, chain.settings, self.server.store)
        # slices side by side: by default as many as the device's model runner has lanes (a CPU 2, CUDA 1)
        lanes = self.server.parallel_slices or runner_for(recon.config.torch_device()).lanes
        self.jobs = jobs = SliceJobs(
            recon, threads=lanes, running=self.server.running, max_queued=self.server.limits.max_queued_slices,
            send=self.send_image, report=self._report, lost=lambda: self.lost if not self.sealed else "sealed",
            on_send_failed=self._send_failed, name=f"crunet-slices-{self.peer}",
            noise_sigma=lambda: assembler.noise_sigma, open_slices=assembler.trigger.open_slices)
        log.info("session: %s, method %s, device %s", chain.source, chain.settings.method, recon.config.torch_device())
        self._stream(lambda acq: jobs.put(assembler.acquisition(acq), self._check))
        jobs.put(assembler.close(), self._check)
        jobs.worker.finish()
        self._await_worker()
        log.info("session done: %d acquisitions, %d images, %d errors, %d waveforms ignored, %d auxiliary lines "
                 "ignored; reading paused %.1f s for the slice queue", assembler.received, self.images, self.errors,
                 self.waveforms, assembler.ignored, jobs.held_s)

    def _check(self) -> None:
        """While the reader waits: a gone client or a stopping server ends the wait (their usual paths)."""
        if self.lost is not None:
            raise PeerGone(self.lost)
        if self.server.stopping.is_set():
            raise Stopped()

    def _report(self, error: ChainError) -> None:
        """A failed slice or chain error: TEXT, and the marker image with ``error_reporting=image``."""
        self.errors += 1
        self.send_text(error.message)
        if error.slices and self.jobs.recon.settings.error_reporting == "image":
            self.send_image(self.jobs.recon.failure_image(error))

    def _send_failed(self, exc: OSError) -> None:
        self.lost = self.lost or f"sending to the client failed ({exc})"

    def _await_worker(self) -> None:
        """Wait for the slices to finish, watching the client (gone?) and the server (stopping?)."""
        while not self.jobs.worker.wait(0):
            self._check()
            self.reader.watch(0.25)
        if self.lost is not None:
            raise PeerGone(self.lost)

    def _stopped(self) -> str | None:
        """Server stopping: finish the slice in progress within the grace period, drop the rest."""
        w = self.jobs.worker if self.jobs is not None else None
        if w is not None:
            w.cancel(interrupt=False)  # no slice starts any more
            try:
                while not w.wait(0) and time.monotonic() < self.server.grace_deadline:
                    self.reader.watch(0.25)
            except PeerGone as exc:
                self._gone(str(exc))
                return None
            if not w.wait(0):
                w.cancel()
                w.wait(10)
        left = self.jobs.not_reconstructed() if self.jobs is not None else []
        if not left:
            return "crunet serve: server shutting down; closing the connection"
        return (f"crunet serve: server shutting down; slice(s) {', '.join(map(str, left))} not reconstructed"
                + _interrupted(w.interrupted if w is not None else 0))
