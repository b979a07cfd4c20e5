"""``crunet replay``: send a raw file to a Gadgetron (or ``crunet serve``) and store the images.

Same wire behaviour as the stock ``gadgetron_ismrmrd_client``: when the file's
header depends on a noise measurement, first a dependency query on its own
connection (CONFIG_SCRIPT naming NoiseSummaryGadget + DependencyQueryWriter, CLOSE;
the reply is message 1019, see :mod:`gadgets.dependencies`); then CONFIG_FILE (id 1,
1024-byte name) or CONFIG_SCRIPT (id 2), HEADER (3), every acquisition (1008) and
waveform (1026) of the file in order, CLOSE (4); a reader thread collects images
(1022) and TEXT (5) until the server's CLOSE. Images are written like the stock
client writes them: ``/<group>/image_<series>/{data,header,attributes}``, the group
defaulting to the local time. Connecting is retried (the stock client has a small
connect race). Every message from the server is read by
:class:`gadgets.protocol.MessageReader` (within :data:`MAX_REPLY_BYTES` and the
timeout); the messages sent are built by :mod:`gadgets.writers`.

Unlike the stock client, an incomplete result is never passed off as complete:

* the server's messages (:attr:`ReplayResult.texts`) are kept apart from replay's
  own problems (:attr:`ReplayResult.problems`);
* when the server reported errors, the group gets an attribute
  ``crunet_replay_errors`` listing them;
* when the connection ended without the server's CLOSE (server killed, connection
  lost, replay interrupted), the images that did arrive go to
  ``<output stem>.partial<suffix>`` (group attribute ``crunet_replay_incomplete``
  says why), never into the requested output file.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

from gadgets.bucket import arrays_to_acquisitions
from gadgets.dependencies import LEGACY_PREFIX, noise_dependency
from gadgets.protocol import (FROM_SERVER, Close, DependencyQuery, IdleTimeout, Limits, MessageReader, PeerGone,
                              ProtocolError, Text)
from gadgets.writers import acquisition_message, close_message, config_file_message, config_script_message, \
    header_message
from recon.errors import CrunetError, InputError
from recon.io.h5guard import HDF5_LOCK
from recon.io.header import parse_header
from recon.io.images import write_images
from recon.io.raw import read_acquisitions

#: largest message accepted from the server (an image of a real series is a few MiB)
MAX_REPLY_BYTES = 1 << 30


@dataclass
class ReplayResult:
    images: list[ismrmrd.Image] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # what the server said (TEXT)
    problems: list[str] = field(default_factory=list)  # replay's own findings
    closed: bool = False  # the server's CLOSE arrived
    seconds: float = 0.0
    arrivals: list[float] = field(default_factory=list)  # seconds from the first byte sent to each image
    slices_sent: dict[int, float] = field(default_factory=dict)  # idx.slice -> s to its last line sent (pace > 0)
    output: Path | None = None
    group: str = ""
    noise: dict | None = None  # dependency-query answer, when the header depends on a noise measurement


def partial_path(output: str | Path) -> Path:
    """Where images of an incomplete replay go: ``out.h5`` -> ``out.partial.h5``."""
    p = Path(output)
    return p.with_name(f"{p.stem}.partial{p.suffix or '.h5'}")


def _connect(host: str, port: int, retries: int, delay: float) -> socket.socket:
    last = None
    for _ in range(max(1, retries)):
        try:
            return socket.create_connection((host, port), timeout=30)
        except OSError as exc:
            last = exc
            time.sleep(delay)
    raise CrunetError(f"cannot connect to {host}:{port}: {last}")


def _reader(sock: socket.socket, timeout: float) -> MessageReader:
    """The server's messages on ``sock``: each must start within ``timeout`` s and arrive whole within it."""
    limits = Limits(max_message_bytes=MAX_REPLY_BYTES, message_timeout=timeout, idle_timeout=timeout)
    return MessageReader(sock, limits, accept=FROM_SERVER, peer="server")


def dependency_query_config(measurement: str) -> str:
    """The chain the stock client sends to ask for a stored noise measurement's statistics."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<gadgetronStreamConfiguration xmlns="http://gadgetron.sf.net/gadgetron">\n'
            '  <writer><slot>1019</slot><dll>gadgetron_mricore</dll>'
            '<classname>DependencyQueryWriter</classname></writer>\n'
            '  <gadget><name>NoiseSummary</name><dll>gadgetron_mricore</dll>'
            '<classname>NoiseSummaryGadget</classname>\n'
            f'    <property><name>noise_file</name><value>{LEGACY_PREFIX}{measurement}</value></property>\n'
            '  </gadget>\n</gadgetronStreamConfiguration>\n')


def query_noise(host: str, port: int, measurement: str, timeout: float = 30.0, retries: int = 10) -> dict:
    """The server's noise statistics of a stored measurement (``{"status": "failed"}`` when unknown)."""
    with _connect(host, port, retries, 0.5) as sock:
        sock.settimeout(timeout)
        sock.sendall(config_script_message(dependency_query_config(measurement)) + close_message())
        meta = None
        for msg in _reader(sock, timeout):
            if isinstance(msg, DependencyQuery):
                meta = msg.meta
            elif isinstance(msg, Text):
                raise CrunetError(f"dependency query: server says: {msg.text}")
            elif not isinstance(msg, Close):
                raise CrunetError(f"dependency query: unexpected message {type(msg).__name__}")
    return meta or {"status": "failed"}


def replay(
    raw_path: str | Path,
    output: str | Path | None,
    host: str = "127.0.0.1",
    port: int = 9002,
    config: str = "default.xml",
    config_script: str | None = None,
    group: str | None = None,
    timeout: float = 600.0,
    retries: int = 10,
    pace: float = 0.0,
) -> ReplayResult:
    """Replay ``raw_path`` and write the returned images to ``output`` (if any arrive).

    ``timeout`` bounds the server's silence, not the whole replay: the replay gives up
    when no byte has arrived for ``timeout`` seconds (a server that accepted the
    connection and never answers, or a reconstruction stuck on one slice), the same
    rule as the server's own idle timeout. A server that keeps sending keeps the
    replay alive however long the series takes.
    """
    first = config_script_message(config_script) if config_script is not None else config_file_message(config)
    dataset_group, xml, headers, data = read_acquisitions(raw_path)
    result = ReplayResult(group=group or time.strftime("%Y-%m-%d %H:%M:%S"))
    dependency = noise_dependency(parse_header(xml, source=str(raw_path)))
    if dependency:
        try:
            result.noise = query_noise(host, port, dependency, retries=retries)
        except (CrunetError, OSError, EOFError, ValueError) as exc:  # the stock client warns and goes on
            result.noise = {"status": "failed", "error": f"query failed ({exc})"}
        result.noise["measurement"] = dependency
    sock = _connect(host, port, retries, 0.5)
    sock.settimeout(timeout)  # bounds each send
    wfile = sock.makefile("wb")
    t0 = time.perf_counter()

    def receive() -> None:
        try:
            for msg in _reader(sock, timeout):
                if isinstance(msg, ismrmrd.Image):
                    result.images.append(msg)
                    result.arrivals.append(time.perf_counter() - t0)
                elif isinstance(msg, Text):
                    result.texts.append(msg.text)
                elif isinstance(msg, Close):
                    result.closed = True
                else:  # a RESPONSE, a dependency query answer or an ERROR has no place here
                    raise ProtocolError(f"unexpected message from the server: {msg}")
        except IdleTimeout:
            result.problems.append(f"no message from {host}:{port} for {timeout:g} s (the server's silence "
                                   "exceeded --timeout)")
        except (ProtocolError, PeerGone, OSError) as exc:
            result.problems.append(f"connection ended without the server's CLOSE ({exc})")

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    try:
        try:
            wfile.write(first)
            wfile.write(header_message(xml))  # the file's XML as is
            for acq in arrays_to_acquisitions(headers, data, copy=False):
                wfile.write(acquisition_message(acq))
                if pace > 0:
                    wfile.flush()
                    result.slices_sent[acq.idx.slice] = time.perf_counter() - t0
                    time.sleep(pace)
            wfile.write(close_message())
            wfile.flush()
        except OSError as exc:
            result.problems.append(f"sending failed ({exc})")
        while reader.is_alive():  # each read is bounded by the timeout
            reader.join(1.0)
    except KeyboardInterrupt:
        result.problems.append("interrupted")
        _finish(sock, wfile)
        reader.join(5)
        result.seconds = time.perf_counter() - t0
        _store(result, output)
        raise
    result.seconds = time.perf_counter() - t0
    _finish(sock, wfile)
    _store(result, output)
    if not result.images and not result.texts and result.closed:
        raise InputError(f"{raw_path}: the server returned no images and no message")
    return result


def _finish(sock: socket.socket, *files) -> None:
    for f in files:
        try:
            f.close()
        except OSError:
            pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _store(result: ReplayResult, output: str | Path | None) -> None:
    """Write the images: complete -> ``output``; no CLOSE -> the ``.partial`` file; mark problems."""
    with HDF5_LOCK:
        _store_unlocked(result, output)


def _store_unlocked(result: ReplayResult, output: str | Path | None) -> None:
    if output is None or not result.images:
        return
    images = list(result.images)
    if result.closed:
        result.output = write_images(output, images, group=result.group)
        if result.texts:
            _append_attr(result.output, result.group, "crunet_replay_errors", result.texts)
    else:
        result.output = write_images(partial_path(output), images, group=result.group)
        _append_attr(result.output, result.group, "crunet_replay_incomplete", result.problems or ["no CLOSE"])


def _append_attr(path: Path, group: str, name: str, values: list[str]) -> None:
    with h5py.File(path, "a") as f:
        g = f[group]
        old = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(g.attrs.get(name, []))]
        g.attrs[name] = np.array(old + [str(v) for v in values], dtype=h5py.string_dtype())
