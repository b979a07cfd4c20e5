"""Hardened use of the ``gadgetron`` package's external-gadget connection.

Guards for the package's known defects (docs/design.md §6), each tested:

* a peer that drops without CLOSE makes its socket reader spin at 100 % CPU
  (``recv`` returns ``b""`` forever): :class:`SafeSocket` raises instead;
* its bucket reader fails on buckets carrying waveforms and returns read-only
  arrays: message 1050 is read with :func:`gadgets.bucket.read_bucket`;
* its array writer (used for ImageArray 1024 and ReconData 1023) calls
  ``np.array(..., copy=False)``, which numpy 2 refuses whenever a cast is needed:
  :func:`patch_array_writer` swaps in one that copies when it must;
* ``listen()`` binds every address: :func:`listen` and :func:`serve` bind loopback by
  default, on both 127.0.0.1 and ::1 (Gadgetron connects ``<connect>`` chains to
  ``localhost`` and tries only the first address it resolves, see :mod:`gadgets.net`);
* it cannot send buckets or TEXT: writers for both are added — directly to the
  writer list, since its ``add_writer`` wraps writers in a one-argument lambda
  that ``send`` calls with two arguments (TypeError on first use);
* on a handler exception it only sends CLOSE: :func:`run_handler` logs the error
  and sends an ERROR message (id 8, uint64 length + text) first — the one error
  message Gadgetron 4 accepts from an external gadget (its external channel turns
  it into a RemoteError naming our text; TEXT, id 5, is an illegal message there,
  see apps/gadgetron/connection/nodes/common/Serialization.cpp).

These guards use internals of gadgetron 1.4.1 (:data:`GADGETRON_INTERNALS`: private
methods and helper classes of its ``Connection``, module functions that are replaced),
so setup.py pins that release; :func:`check_gadgetron` runs on import and names the
installed version and what it lacks when they are missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import socket
import threading
from typing import Callable

import numpy as np

#: the gadgetron release whose internals this module uses (setup.py pins it)
GADGETRON_VERSION = "1.4.1"
#: module -> the internals of it used here: Connection's socket wrapper (subclassed), its Struct,
#: default readers/writers and CONFIG/HEADER readers (rebuilt by :func:`connect`), and the array
#: writers replaced by :func:`patch_array_writer` (``write_array`` is imported by name into recon_data)
GADGETRON_INTERNALS = {
    "gadgetron.external.connection": ("Connection.SocketWrapper", "Connection.Struct", "Connection._default_readers",
                                      "Connection._default_writers", "Connection._read_config",
                                      "Connection._read_header", "Connection.add_reader"),
    "gadgetron.external.writers": ("write_vector", "write_array"),
    "gadgetron.types.recon_data": ("write_array",),
}


class GadgetronVersionError(ImportError):
    """The installed ``gadgetron`` package lacks internals this module relies on."""


def installed_gadgetron_version() -> str:
    try:
        return importlib.metadata.version("gadgetron")
    except importlib.metadata.PackageNotFoundError:
        try:
            return str(importlib.import_module("gadgetron").__version__)
        except (ImportError, AttributeError):
            return "not installed"


def check_gadgetron() -> None:
    """Raise :class:`GadgetronVersionError` unless every name of :data:`GADGETRON_INTERNALS` is there."""
    missing, absent = [], object()
    for module, names in GADGETRON_INTERNALS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"module {module} ({exc})")
            continue
        for dotted in names:
            obj = mod
            for part in dotted.split("."):
                obj = getattr(obj, part, absent)
                if obj is absent:
                    missing.append(f"{module}.{dotted}")
                    break
    if missing:
        raise GadgetronVersionError(
            f"gadgets.external relies on internals of gadgetron {GADGETRON_VERSION}; the installed gadgetron "
            f"({installed_gadgetron_version()}) lacks {', '.join(missing)}. "
            f"Install gadgetron=={GADGETRON_VERSION} (pip install 'gadgetron=={GADGETRON_VERSION}').")


check_gadgetron()

from gadgetron.external.connection import Connection  # noqa: E402

from gadgets.bucket import MESSAGE_BUCKET, Bucket, bucket_message, read_bucket  # noqa: E402
from gadgets.net import accept_any, bind_listeners, describe  # noqa: E402
from gadgets.writers import error_message, text_message  # noqa: E402
from recon.errors import InputError  # noqa: E402

log = logging.getLogger("crunet.external")


class PeerClosed(ConnectionError):
    """The peer closed the socket without sending CLOSE."""


class SafeSocket(Connection.SocketWrapper):
    """Socket wrapper that raises :class:`PeerClosed` on EOF instead of spinning."""

    def read(self, nbytes: int) -> bytes:
        chunks, got = [], 0
        while got < nbytes:
            b = self.socket.recv(nbytes - got, socket.MSG_WAITALL)
            if not b:
                raise PeerClosed(f"peer closed the connection ({got} of {nbytes} bytes read)")
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # peer already gone
            self.socket.close()


class Text(str):
    """A TEXT message (id 5: uint32 length + text) to send to the peer."""


class Error(str):
    """An ERROR message (id 8: uint64 length + text), Gadgetron's remote-error report."""


def _write_text(destination, text: str) -> None:
    destination.write(text_message(str(text)))


def _write_error(destination, text: str) -> None:
    destination.write(error_message(str(text)))


def _write_bucket(destination, bucket: Bucket) -> None:
    destination.write(bucket_message(bucket))


def _write_array(destination, array, dtype) -> None:
    """The package's ``write_array`` (dims as uint64 vector, data in Fortran order), numpy-2 safe."""
    from gadgetron.external.writers import write_vector

    write_vector(destination, array.shape)
    destination.write(np.asarray(array, dtype=dtype).tobytes(order="F"))


def patch_array_writer() -> None:
    """Replace the numpy-2-unsafe ``write_array`` where the package's writers look it up."""
    import gadgetron.external.writers as writers
    import gadgetron.types.recon_data as recon_data

    writers.write_array = _write_array  # used as writers.write_array by image_array
    recon_data.write_array = _write_array  # imported by name into recon_data


def harden(connection: Connection) -> Connection:
    """Apply the guards above to a connection made by the ``gadgetron`` package (idempotent)."""
    if getattr(connection, "_crunet_hardened", False):
        return connection
    connection._crunet_hardened = True
    patch_array_writer()
    if not isinstance(connection.socket, SafeSocket):
        connection.socket = SafeSocket(connection.socket.socket)
    connection.add_reader(MESSAGE_BUCKET, read_bucket_from_socket)
    # not add_writer(): it wraps writers so that send() fails with a TypeError
    connection.writers.insert(0, (lambda item: isinstance(item, Bucket), _write_bucket))
    connection.writers.insert(0, (lambda item: isinstance(item, Text), _write_text))
    connection.writers.insert(0, (lambda item: isinstance(item, Error), _write_error))
    return connection


def read_bucket_from_socket(source) -> Bucket:
    return read_bucket(source.read)


def connect(sock: socket.socket) -> Connection:
    """A hardened :class:`Connection` over an accepted/connected socket (reads CONFIG and HEADER)."""

    class _Hardened(Connection):
        def __init__(self, s):
            self.socket = SafeSocket(s)
            self.readers = Connection._default_readers()
            self.writers = Connection._default_writers()
            self.raw_bytes = Connection.Struct(config=None, header=None)
            self.config, self.raw_bytes.config = self._read_config()
            self.header, self.raw_bytes.header = self._read_header()
            self.filters = []

    return harden(_Hardened(sock))


def run_handler(connection: Connection, handler: Callable[[Connection], None]) -> None:
    """Run ``handler(connection)``; on failure log it and send ERROR before the CLOSE."""
    harden(connection)
    try:
        handler(connection)
    except PeerClosed as exc:
        log.error("%s", exc)
    except InputError as exc:  # bad settings or data (e.g. weights not installed): one line, no traceback
        log.error("crunet gadget error: %s", exc)
        try:
            connection.send(Error(f"crunet gadget error: {exc}"))
        except OSError:
            pass
    except Exception as exc:  # noqa: BLE001 - reported to the peer, then closed
        log.exception("gadget failed")
        try:
            connection.send(Error(f"crunet gadget error: {type(exc).__name__}: {exc}"))
        except OSError:
            pass


def listen(port: int, handler: Callable[[Connection], None], host: str = "localhost",
           ready: Callable[[int], None] | None = None) -> None:
    """Wait for one Gadgetron connection on ``host:port`` and serve it.

    This is the ``<connect port=".."/>`` debugging mode: start the gadget by hand,
    then let Gadgetron connect. ``localhost`` (the default) listens on 127.0.0.1 and
    ::1. ``ready(port)`` is called once listening.
    """
    listeners = bind_listeners(host, port, backlog=1)
    try:
        if ready:
            ready(listeners[0].getsockname()[1])
        log.info("listening on %s", describe(listeners))
        accepted = None
        while accepted is None:
            accepted = accept_any(listeners, 1.0)
    finally:
        for lst in listeners:
            lst.close()
    sock, addr = accepted
    log.info("Gadgetron connected from %s", addr)
    with connect(sock) as conn:
        run_handler(conn, handler)


def serve(port: int, handler: Callable[[Connection], None], host: str = "localhost",
          ready: Callable[[int], None] | None = None, stop: threading.Event | None = None) -> None:
    """Serve Gadgetron connections on ``host:port`` until ``stop`` is set, one thread each.

    For chains whose external block says ``<connect port="..."/>`` and that open many
    connections — the workers of ``xml_configs/crunet_distributed.xml`` open one per
    slice. Run it with ``crunet gadget --port 18000`` on every worker. ``localhost``
    (the default) listens on 127.0.0.1 and ::1.
    """
    listeners = bind_listeners(host, port)

    def one(sock: socket.socket) -> None:
        try:
            with connect(sock) as conn:
                run_handler(conn, handler)
        except (PeerClosed, OSError) as exc:
            log.error("connection failed: %s", exc)

    try:
        if ready:
            ready(listeners[0].getsockname()[1])
        log.info("listening on %s", describe(listeners))
        while stop is None or not stop.is_set():
            accepted = accept_any(listeners, 0.5)
            if accepted is None:
                continue
            sock, addr = accepted
            log.info("Gadgetron connected from %s", addr)
            threading.Thread(target=one, args=(sock,), daemon=True).start()
    finally:
        for lst in listeners:
            lst.close()
