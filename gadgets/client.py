"""``crunet replay``: send a raw file to a Gadgetron (or ``crunet serve``) and store the images.

Same wire behaviour as the stock ``gadgetron_ismrmrd_client``: CONFIG_FILE (id 1,
1024-byte name) or CONFIG_SCRIPT (id 2), HEADER (3), every acquisition (1008) and
waveform (1026) of the file in order, CLOSE (4); a reader thread collects images
(1022) and TEXT (5) until the server's CLOSE. Images are written like the stock
client writes them: ``/<group>/image_<series>/{data,header,attributes}``, the
group defaulting to the local time. Connecting is retried (the stock client has a
small connect race).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ismrmrd
from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolDeserializer, ProtocolSerializer

from gadgets.bucket import arrays_to_acquisitions
from recon.errors import CrunetError, InputError
from recon.io.images import write_images
from recon.io.raw import read_acquisitions


@dataclass
class ReplayResult:
    images: list[ismrmrd.Image] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    closed: bool = False
    seconds: float = 0.0
    output: Path | None = None
    group: str = ""


def _connect(host: str, port: int, retries: int, delay: float) -> socket.socket:
    last = None
    for _ in range(max(1, retries)):
        try:
            return socket.create_connection((host, port), timeout=30)
        except OSError as exc:
            last = exc
            time.sleep(delay)
    raise CrunetError(f"cannot connect to {host}:{port}: {last}")


def replay(
    raw_path: str | Path,
    output: str | Path | None,
    host: str = "127.0.0.1",
    port: int = 9002,
    config: str = "default.xml",
    config_script: str | None = None,
    group: str | None = None,
    timeout: float = 3600.0,
    retries: int = 10,
) -> ReplayResult:
    """Replay ``raw_path`` and write the returned images to ``output`` (if any arrive)."""
    dataset_group, xml, headers, data = read_acquisitions(raw_path)
    sock = _connect(host, port, retries, 0.5)
    sock.settimeout(timeout)
    result = ReplayResult(group=group or time.strftime("%Y-%m-%d %H:%M:%S"))
    rfile, wfile = sock.makefile("rb"), sock.makefile("wb")
    t0 = time.perf_counter()

    def receive() -> None:
        try:
            for item in ProtocolDeserializer(rfile).deserialize():
                if isinstance(item, ismrmrd.Image):
                    result.images.append(item)
                elif isinstance(item, str):
                    result.texts.append(str(item))
            result.closed = True
        except (EOFError, OSError, ValueError) as exc:
            result.texts.append(f"replay: connection ended without CLOSE ({exc})")

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    try:
        out = ProtocolSerializer(wfile)
        out.serialize(ConfigText(config_script) if config_script is not None else ConfigFile(config))
        wfile.write(struct.pack("<HI", 3, len(xml)) + xml)  # HEADER: the file's XML as is
        for acq in arrays_to_acquisitions(headers, data, copy=False):
            out.serialize(acq)
        out.close()  # CLOSE
    except OSError as exc:
        result.texts.append(f"replay: sending failed ({exc})")
    reader.join(timeout)
    result.seconds = time.perf_counter() - t0
    for f in (rfile, wfile):
        try:
            f.close()
        except OSError:
            pass
    sock.close()
    if reader.is_alive():
        raise CrunetError(f"no CLOSE from {host}:{port} within {timeout:.0f} s")
    if output is not None and result.images:
        result.output = write_images(output, result.images, group=result.group)
    if not result.images and not result.texts:
        raise InputError(f"{raw_path}: the server returned no images and no message")
    return result
