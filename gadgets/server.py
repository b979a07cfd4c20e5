"""``crunet serve``: a standalone server speaking Gadgetron's client protocol.

This module is the listening side (:class:`CrunetServer`): it binds (loopback by
default; ``localhost`` = 127.0.0.1 and ::1, see :mod:`gadgets.net`), accepts, and
runs one :class:`gadgets.session.Session` thread per connection, which plays the
protocol (the stock ``gadgetron_ismrmrd_client`` in each of its modes, answered as
Gadgetron 4 answers them, and MRD App clients; see :mod:`gadgets.session`).

Every connection ends with CLOSE; failures reach the client as TEXT first — never
ERROR (8), which makes the stock client abort. Limits (:class:`gadgets.protocol.Limits`):
each message within a size cap and a whole-message deadline, an idle timeout
between messages, at most ``max_connections`` connections at once (more are told
so and closed). A refused connection (bad chain name, broken limit, protocol
error) gets TEXT + CLOSE at once and is closed after a short linger.

:meth:`CrunetServer.request_stop` (SIGTERM/SIGINT in ``crunet serve``) stops
accepting, lets each slice in progress finish within the grace period (else
interrupts it), drops the slices not started, and tells each client which slices
were not reconstructed (TEXT) before its CLOSE.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time

from gadgets.dependencies import NoiseStore
from gadgets.net import accept_any, bind_listeners, describe
from gadgets.protocol import Limits, MessageReader
from gadgets.session import LINGER, Session
from gadgets.worker import Running
from gadgets.writers import close_message, text_message

log = logging.getLogger("crunet.server")
DEFAULT_PORT = 9002


class CrunetServer:
    """Accepts connections and runs a :class:`~gadgets.session.Session` thread for each.

    ``serve_forever()`` runs until :meth:`request_stop`; :meth:`shutdown` stops and
    waits for the sessions; :meth:`server_close` releases the port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, idle_timeout: float = 600.0, *,
                 limits: Limits | None = None, max_connections: int = 16, shutdown_grace: float = 30.0,
                 store: NoiseStore | None = None, parallel_slices: int | None = None):
        if parallel_slices is not None and parallel_slices < 1:
            raise ValueError(f"parallel_slices must be >= 1, got {parallel_slices}")
        self.limits = limits or Limits(idle_timeout=idle_timeout)
        #: slices of one connection reconstructed side by side (None: the device runner's lanes)
        self.parallel_slices = parallel_slices
        self.max_connections = max_connections
        self.shutdown_grace = shutdown_grace
        self.store = store if store is not None else NoiseStore()
        self.listeners = bind_listeners(host, port)
        self._address = self.listeners[0].getsockname()[:2]
        self.stopping = threading.Event()
        self.grace_deadline = math.inf
        self._sessions: set[threading.Thread] = set()
        self.running = Running()  # slices in progress over all connections
        self._refusing = 0
        self._lock = threading.Lock()
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return self._address[1]

    @property
    def server_address(self) -> tuple:
        return self._address

    def describe(self) -> str:
        return describe(self.listeners)

    def active(self) -> int:
        with self._lock:
            return len(self._sessions)

    def serve_forever(self, poll: float = 0.25) -> None:
        self._serving.set()
        try:
            while not self.stopping.is_set():
                accepted = accept_any(self.listeners, poll)
                if accepted is not None:
                    self._admit(*accepted)
        finally:
            self.server_close()  # new connections are refused at once from here on
            self._stopped.set()

    def _admit(self, sock: socket.socket, addr) -> None:
        with self._lock:
            busy = len(self._sessions) >= self.max_connections
            if not busy:
                thread = threading.Thread(target=self._run_session, args=(sock, addr), daemon=True,
                                          name=f"crunet-session-{addr}")
                self._sessions.add(thread)
        if busy:
            self._refuse(sock, f"crunet serve: busy: {self.max_connections} connections at once "
                               "(--max-connections); try again later")
        else:
            log.info("client %s connected", addr)
            thread.start()

    def _run_session(self, sock: socket.socket, addr) -> None:
        try:
            Session(sock, self, addr).run()
        finally:
            with self._lock:
                self._sessions.discard(threading.current_thread())

    def _refuse(self, sock: socket.socket, message: str) -> None:
        """TEXT + CLOSE, then close after a short linger, in a thread (bounded in number)."""
        log.warning("%s", message)
        with self._lock:
            if self._refusing >= 4 * self.max_connections:
                sock.close()
                return
            self._refusing += 1

        def run() -> None:
            try:
                sock.settimeout(5)
                sock.sendall(text_message(message) + close_message())
                sock.shutdown(socket.SHUT_WR)
                MessageReader(sock, self.limits).discard(LINGER)
            except OSError:
                pass
            finally:
                sock.close()
                with self._lock:
                    self._refusing -= 1

        threading.Thread(target=run, daemon=True, name="crunet-refuse").start()

    def request_stop(self, grace: float | None = None) -> None:
        """Stop accepting; sessions finish their slice in progress within ``grace`` seconds.

        A second call (a second signal) ends the grace period at once.
        """
        if self.stopping.is_set():
            self.grace_deadline = time.monotonic()
            return
        self.grace_deadline = time.monotonic() + (self.shutdown_grace if grace is None else grace)
        self.stopping.set()

    def wait_sessions(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for every session to end; returns how many are left."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                threads = list(self._sessions)
            if not threads:
                return 0
            threads[0].join(min(0.25, max(end - time.monotonic(), 0)))
        return self.active()

    def shutdown(self, grace: float | None = None) -> None:
        """Stop serving and wait for the sessions (graceful, see :meth:`request_stop`)."""
        self.request_stop(grace)
        if self._serving.is_set():
            self._stopped.wait(10)
        self.wait_sessions((self.shutdown_grace if grace is None else grace) + 15)

    def server_close(self) -> None:
        for lst in self.listeners:
            lst.close()


def start_background(host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 600.0, **kwargs
                     ) -> tuple[CrunetServer, threading.Thread]:
    """Start a server in a daemon thread (port 0 picks a free port); for tests and the demo."""
    server = CrunetServer(host, port, idle_timeout, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="crunet-serve")
    thread.start()
    return server, thread
