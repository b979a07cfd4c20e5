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
    """One bucket per slice, as AcquisitionAccumulateTriggerGadget (trigger on slice) makes them."""
    by_slice: dict[int, list] = {}
    for a in acqs:
        if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            by_slice.setdefault(a.idx.slice, []).append(a)
    return [split_for_bucket(by_slice[s]) for s in sorted(by_slice)]


def configuration(**settings) -> str:
    props = "".join(f'<property name="{k}" value="{v}"/>' for k, v in settings.items())
    return f"<configuration>{props}</configuration>"


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
