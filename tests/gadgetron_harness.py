"""Plays Gadgetron's side of the external-gadget protocol over a real TCP socket.

Gadgetron starts an external Python gadget as ``python -m gadgetron <port>
<module> <target>`` and the gadget connects back; Gadgetron then sends CONFIG
(id 2: the ``<configuration>`` element), HEADER (3), the stream's messages
(here AcquisitionBuckets 1050, built with :func:`gadgets.bucket.bucket_message`,
plus any other messages) and CLOSE (4), and reads what the gadget sends back
until its CLOSE.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import ismrmrd
from ismrmrd.serialization import ConfigText, ProtocolSerializer

from gadgets.bucket import arrays_to_acquisitions, split_for_bucket
from recon.io.raw import read_acquisitions


def file_acquisitions(path) -> tuple[bytes, list[ismrmrd.Acquisition]]:
    _, xml, headers, data = read_acquisitions(path)
    return xml, arrays_to_acquisitions(headers, data)


def slice_buckets(acqs: list[ismrmrd.Acquisition]):
    """The buckets AcquisitionAccumulateTriggerGadget (trigger_dimension=slice) makes: one each time
    idx.slice changes, and one at the end of the stream; noise lines skipped."""
    from gadgets.chain import SliceTrigger

    trigger, groups = SliceTrigger(), []
    for a in acqs:
        if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            groups += trigger.add(a)
    return [split_for_bucket(g) for g in groups + trigger.flush()]


def configuration(**settings) -> str:
    props = "".join(f'<property name="{k}" value="{v}"/>' for k, v in settings.items())
    return f"<configuration>{props}</configuration>"


def chain_script(**settings) -> str:
    """A whole chain XML (CONFIG_SCRIPT) running our external gadget with ``settings``."""
    return ('<configuration><stream><external><execute name="gadgets.gadget" target="reconstruct" '
            f'type="python"/>{configuration(**settings)}</external></stream></configuration>')


#: The zero-filled chain on the CPU, sent as a script.
CHAIN_ZF = chain_script(method="zf", device="cpu")


@dataclass
class Received:
    images: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    acquisitions: list = field(default_factory=list)
    waveforms: list = field(default_factory=list)
    closed: bool = False
    error: str = ""


class GadgetronPeer:
    """Gadgetron's end: listen, start the gadget process, exchange messages."""

    def __init__(self, module: str = "gadgets.gadget", target: str = "reconstruct", timeout: float = 120):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(timeout)
        port = self.srv.getsockname()[1]
        env_cmd = [sys.executable, "-m", "gadgetron", str(port), module, target]
        self.proc = subprocess.Popen(env_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.sock, _ = self.srv.accept()
        self.sock.settimeout(timeout)
        self.wfile = self.sock.makefile("wb")
        self.out = ProtocolSerializer(self.wfile)
        self.received = Received()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Read what the gadget sends, as Gadgetron's external channel does (ERROR 8 included)."""
        f = self.sock.makefile("rb")

        def exactly(n):
            b = f.read(n)
            if len(b) != n:
                raise EOFError("gadget closed the socket without CLOSE")
            return b

        try:
            while True:
                (mid,) = struct.unpack("<H", exactly(2))
                if mid == 4:
                    self.received.closed = True
                    return
                if mid == 1022:
                    self.received.images.append(ismrmrd.Image.deserialize_from(exactly))
                elif mid == 1008:
                    self.received.acquisitions.append(ismrmrd.Acquisition.deserialize_from(exactly))
                elif mid == 1026:
                    self.received.waveforms.append(ismrmrd.Waveform.deserialize_from(exactly))
                elif mid == 5:
                    (n,) = struct.unpack("<I", exactly(4))
                    self.received.texts.append(exactly(n).decode())
                elif mid == 8:
                    (n,) = struct.unpack("<Q", exactly(8))
                    self.received.errors.append(exactly(n).decode())
                else:
                    raise ValueError(f"illegal message id {mid} from the gadget")
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            self.received.error = f"{type(exc).__name__}: {exc}"

    def start(self, config: str, header_xml: bytes) -> None:
        self.out.serialize(ConfigText(config))  # CONFIG (2): uint32 length + XML
        self.raw(struct.pack("<HI", 3, len(header_xml)) + header_xml)

    def raw(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def send(self, item) -> None:
        self.out.serialize(item)
        self.wfile.flush()

    def close(self, timeout: float = 120) -> Received:
        self.out.close()  # CLOSE (4)
        return self.wait(timeout)

    def wait(self, timeout: float = 120) -> Received:
        self._reader.join(timeout)
        try:
            self.proc.wait(timeout)
        finally:
            self.sock.close()
            self.srv.close()
        return self.received

    def output(self) -> str:
        return self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""


# ---------------------------------------------------------------------------------------------
# The stock client: gadgetron_ismrmrd_client's wire behaviour, as its source defines it
# (apps/clients/gadgetron_ismrmrd_client/gadgetron_ismrmrd_client.cpp, gadgetron 846ed3f):
#
# * every connection reads in its own thread from connect on; each message id must have a
#   registered reader, else the reader thread throws and the client aborts (exit 134); a
#   socket closed without CLOSE aborts it too;
# * the replay connection registers 1022 (image), 1018 (blob), 1019 (dependency query,
#   written to the output file), 5 (TEXT, printed) and 7 (RESPONSE, printed);
# * the dependency-query connection (header with a Noise measurementDependency) registers
#   only 1019: it sends a CONFIG_SCRIPT naming NoiseSummaryGadget (noise_file =
#   GadgetronNoiseCovarianceMatrix_<id>) + DependencyQueryWriter, then CLOSE;
# * -q: config (CONFIG_FILE, or CONFIG_SCRIPT with -C), then CLOSE, no file;
# * -Q q: QUERY (uint64 0, uint64 correlation 0, uint64 length + q), then CLOSE;
# * replay: config, HEADER (id 3, uint32 + XML), acquisitions (1008; waveforms 1026 merged
#   by time stamp), CLOSE; then it waits for the server's CLOSE without a timeout.


class ClientAbort(Exception):
    """What makes the stock client abort (uncaught exception in its reader thread: exit 134)."""


@dataclass
class ClientRun:
    images: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    responses: list = field(default_factory=list)
    dependency_replies: list = field(default_factory=list)  # 1019 bodies (Meta XML)
    noise_stats: dict | None = None
    aborted: str = ""
    seconds: float = 0.0


#: The structure of the chain the stock client sends for its dependency query (V1 format, Gadgetron's
#: namespace, property as <name>/<value> children); written here in our own layout.
NOISE_QUERY_CHAIN = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<gadgetronStreamConfiguration xmlns="http://gadgetron.sf.net/gadgetron" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<writer><slot>1019</slot><dll>gadgetron_mricore</dll><classname>DependencyQueryWriter</classname></writer>'
    '<gadget><name>NoiseSummary</name><dll>gadgetron_mricore</dll><classname>NoiseSummaryGadget</classname>'
    '<property><name>noise_file</name><value>{noise_file}</value></property></gadget>'
    '</gadgetronStreamConfiguration>')


class StockClient:
    """One run of ``gadgetron_ismrmrd_client`` against ``host:port``."""

    REPLAY_READERS = (1022, 1018, 1019, 5, 7)

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 120):
        self.host, self.port, self.timeout = host, port, timeout

    def _connection(self, readers, run: ClientRun):
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        reader = threading.Thread(target=self._read, args=(sock, readers, run), daemon=True)
        reader.start()
        return sock, reader

    def _read(self, sock, readers, run: ClientRun) -> None:
        f = sock.makefile("rb")

        def exactly(n):
            b = f.read(n)
            if len(b) != n:
                raise ClientAbort("connection closed without CLOSE")
            return b

        try:
            while True:
                (mid,) = struct.unpack("<H", exactly(2))
                if mid == 4:
                    return
                if mid not in readers:
                    raise ClientAbort(f"Message received with ID: {mid}: Unknown Message ID")
                if mid == 1022:
                    run.images.append(ismrmrd.Image.deserialize_from(exactly))
                elif mid == 5:
                    (n,) = struct.unpack("<I", exactly(4))
                    run.texts.append(exactly(n).decode(errors="replace"))
                elif mid == 7:
                    _corr, n = struct.unpack("<QQ", exactly(16))
                    run.responses.append(exactly(n).decode(errors="replace"))
                elif mid == 1019:
                    (n,) = struct.unpack("<Q", exactly(8))
                    run.dependency_replies.append(exactly(n).decode())
                else:
                    raise ClientAbort(f"reader for {mid} not emulated")
        except (ClientAbort, OSError, struct.error) as exc:
            run.aborted = str(exc) or type(exc).__name__

    def _finish(self, sock, reader, run: ClientRun) -> ClientRun:
        reader.join(self.timeout)
        if reader.is_alive():
            run.aborted = "still waiting for the server's CLOSE (a hang)"
        sock.close()
        return run

    @staticmethod
    def _config(config: str | None, script: str | None) -> bytes:
        if script is not None:
            data = script.encode()
            return struct.pack("<HI", 2, len(data)) + data
        name = (config or "default.xml").encode()
        return struct.pack("<H", 1) + name + b"\0" * (1024 - len(name))

    def noise_statistics(self, measurement: str) -> dict:
        """get_noise_statistics(): the dependency-query connection; {'status': False} on any failure."""
        run = ClientRun()
        sock, reader = self._connection((1019,), run)
        script = NOISE_QUERY_CHAIN.format(noise_file="GadgetronNoiseCovarianceMatrix_" + measurement)
        sock.sendall(self._config(None, script) + struct.pack("<H", 4))
        self._finish(sock, reader, run)
        if run.aborted:
            raise ClientAbort(f"dependency query: {run.aborted}")
        if not run.dependency_replies:
            return {"status": False}
        meta = ismrmrd.Meta.deserialize(run.dependency_replies[-1])
        stats = {"status": meta.get("status") == "success"}
        if stats["status"]:
            stats.update(channels=int(meta["channels"]), sigma_min=float(meta["min_sigma"]),
                         sigma_max=float(meta["max_sigma"]), sigma_mean=float(meta["mean_sigma"]),
                         noise_dwell_time_us=float(meta["noise_dwell_time_us"]))
        return stats

    def query(self, config: str | None = None, script: str | None = None) -> ClientRun:
        """``-q [-c config | -C script]``: the config, then CLOSE."""
        run = ClientRun()
        sock, reader = self._connection(self.REPLAY_READERS, run)
        sock.sendall(self._config(config, script) + struct.pack("<H", 4))
        return self._finish(sock, reader, run)

    def info(self, query: str) -> ClientRun:
        """``-Q query``: QUERY, then CLOSE."""
        run = ClientRun()
        sock, reader = self._connection(self.REPLAY_READERS, run)
        q = query.encode()
        sock.sendall(struct.pack("<HQQQ", 6, 0, 0, len(q)) + q + struct.pack("<H", 4))
        return self._finish(sock, reader, run)

    def replay(self, path, config: str | None = "default.xml", script: str | None = None) -> ClientRun:
        """``-f path -c config`` (or ``-C``): dependency query first if the header asks, then the data."""
        import time

        from gadgets.dependencies import noise_dependency
        from recon.io.header import parse_header

        t0 = time.perf_counter()
        xml, acqs = file_acquisitions(path)
        run = ClientRun()
        dependency = noise_dependency(parse_header(xml))
        if dependency:
            run.noise_stats = self.noise_statistics(dependency)
        sock, reader = self._connection(self.REPLAY_READERS, run)
        w = sock.makefile("wb")
        try:
            w.write(self._config(config, script))
            w.write(struct.pack("<HI", 3, len(xml)) + xml)
            out = ProtocolSerializer(w)
            for a in acqs:
                out.serialize(a)
            out.close()
        except OSError as exc:
            run.aborted = run.aborted or f"send_ismrmrd_acq failed ({exc})"
        self._finish(sock, reader, run)
        run.seconds = time.perf_counter() - t0
        return run
