"""The wire behaviour of python-ismrmrd-server's ``client.py``, re-implemented for the tests.

Learned by reading kspaceKelvin/python-ismrmrd-server (``client.py``, ``connection.py``,
``constants.py`` at df45f51); none of its code is copied. What that client does, and
:class:`MrdAppClient` does the same:

* **Options.** ``filename``; ``-a`` address (``localhost``, IPv4 socket), ``-p`` 9002, ``-o``
  output (default ``<input>_results.h5``), ``-g`` input group (the file's only group
  when not given), ``-G`` output group (default ``str(datetime.now())``), ``-c`` config
  (default ``invertcontrast``), ``-C`` local config file, ``-w`` send waveforms,
  ``--ignore-json-config``, which is also switched on whenever ``-c`` is on the command line.
* **JSON parameters.** Without ``-C``: the text of ``<config>.json`` in the working folder,
  if that file exists; otherwise the input group's ``configAdditional`` dataset (its first
  element), if there is one. With ``--ignore-json-config`` the client parses that JSON
  itself (a malformed file makes the client fail before it sends it), deletes
  ``parameters.config`` and ``parameters.customconfig`` and sends ``json.dumps(..., indent=2)``;
  otherwise it sends the text as it is.
* **Connect.** Up to 5 attempts, 1 s apart. A receiver (a separate process there, a thread
  here) reads the socket from then on, while the main sends.
* **Sends**, every text NUL-terminated and its length counting the NUL: CONFIG_FILE (1: 1024
  bytes, the name NUL-padded) or, with ``-C``, CONFIG_TEXT (2: uint32 length + file text);
  HEADER (3: uint32 length + the file's XML, or ``Dummy XML header`` when it has none); the
  JSON as TEXT (5) when there is one; waveforms (1026) only with ``-w``; every acquisition
  (1008) in file order; the images (1022) of ``image_*`` groups if the input holds any;
  CLOSE (4). A send that fails stops the sending (logged); CLOSE is still tried.
* **Receives** message ids 1, 2, 3, 4, 5, 1008, 1022 and 1026. Any other id is logged
  as unknown and ends the reading (no abort); so does the peer closing the socket.
  Images are appended to ``/<group>/image_<image_series_index>`` of the output file, which
  is created at the first image (or at CLOSE, empty); an image whose shape differs from
  its series' last one is logged and its append fails, which ends the receiver. TEXT is
  logged. At CLOSE, or when reading ends, the receiver shuts the socket down for both
  directions (the sender's next send then fails) and closes the file.
* **Then** the main writes the XML header to ``/<group>/xml`` of the output file. The
  client exits 0 in all these cases; errors show only in its log and in missing images.
"""

from __future__ import annotations

import datetime
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import ismrmrd

RECEIVED_IDS = (1, 2, 3, 4, 5, 1008, 1022, 1026)
DEFAULT_CONFIG = "invertcontrast"
CONFIG_FILE_BYTES = 1024


@dataclass
class MrdClientRun:
    """What one run of the client saw and wrote."""

    outfile: Path
    out_group: str
    sent_json: str | None = None  # the configAdditional text it sent (without the NUL)
    texts: list = field(default_factory=list)
    images: list = field(default_factory=list)
    closed: bool = False  # the server's CLOSE arrived
    ended: str = ""  # why reading ended without CLOSE ("unknown message id ...", "connection closed")
    send_failed: str = ""
    receiver_error: str = ""  # an exception in the receiver (e.g. storing an image of another shape)
    hung: bool = False  # the receiver was still waiting when the harness gave up


def _nul_text(msg_id: int, text: str) -> bytes:
    data = (text + "\0").encode()
    return struct.pack("<HI", msg_id, len(data)) + data


class MrdAppClient:
    """``python client.py [options] filename`` against ``address:port``."""

    def __init__(self, port: int = 9002, address: str = "localhost", timeout: float = 120.0):
        self.port, self.address, self.timeout = port, address, timeout

    # ------------------------------------------------------------------ the JSON it sends

    @staticmethod
    def json_text(raw: h5py.Group, config: str, config_local: str | None, cwd: Path,
                  ignore_json_config: bool) -> str | None:
        text = None
        if config and not config_local and (cwd / f"{config}.json").exists():
            text = (cwd / f"{config}.json").read_text()
        elif "configAdditional" in raw:
            value = raw["configAdditional"][0]
            text = value.decode() if isinstance(value, bytes) else str(value)
        if text is not None and ignore_json_config:
            doc = json.loads(text)  # a malformed file ends the client here, before anything is sent
            if "parameters" in doc:
                doc["parameters"].pop("config", None)
                doc["parameters"].pop("customconfig", None)
                text = json.dumps(doc, indent=2)
        return text

    # ------------------------------------------------------------------ receiving

    def _receive(self, sock: socket.socket, run: MrdClientRun) -> None:
        f = sock.makefile("rb")
        dset = None

        def exactly(n: int) -> bytes:
            b = f.read(n)
            if len(b) != n:
                raise EOFError("connection closed")
            return b

        def store(image: ismrmrd.Image) -> None:
            nonlocal dset
            if dset is None:
                dset = ismrmrd.Dataset(str(run.outfile), run.out_group)
            dset.append_image(f"image_{image.image_series_index}", image)  # another shape: raises

        try:
            while True:
                try:
                    (mid,) = struct.unpack("<H", exactly(2))
                except EOFError:
                    run.ended = "connection closed"
                    return
                if mid not in RECEIVED_IDS:
                    run.ended = f"unknown message id {mid}"
                    return
                if mid == 4:
                    run.closed = True
                    return
                if mid == 5:
                    (n,) = struct.unpack("<I", exactly(4))
                    run.texts.append(exactly(n).split(b"\0", 1)[0].decode())
                elif mid == 1022:
                    image = ismrmrd.Image.deserialize_from(exactly)
                    run.images.append(image)
                    store(image)
                elif mid == 1008:
                    ismrmrd.Acquisition.deserialize_from(exactly)
                elif mid == 1026:
                    ismrmrd.Waveform.deserialize_from(exactly)
                elif mid == 1:
                    exactly(CONFIG_FILE_BYTES)
                else:  # 2, 3: uint32 length + text
                    (n,) = struct.unpack("<I", exactly(4))
                    exactly(n)
        except Exception as exc:  # noqa: BLE001 - the receiver dies; the client goes on
            run.receiver_error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if dset is None and run.closed:
                dset = ismrmrd.Dataset(str(run.outfile), run.out_group)
            if dset is not None:
                dset.close()

    # ------------------------------------------------------------------ one run

    def run(self, filename, *, outfile=None, out_group: str | None = None, config: str | None = None,
            config_local=None, in_group: str | None = None, cwd=None, send_waveforms: bool = False,
            ignore_json_config: bool = False) -> MrdClientRun:
        """One client run. ``config=None`` means no ``-c`` on the command line (the default name is used
        and ``--ignore-json-config`` stays as given); ``cwd`` is the folder searched for ``<config>.json``."""
        filename = Path(filename)
        if config is not None:
            ignore_json_config = True
        else:
            config = DEFAULT_CONFIG
        outfile = Path(outfile) if outfile is not None else filename.with_name(filename.stem + "_results"
                                                                                 + filename.suffix)
        run = MrdClientRun(outfile=outfile, out_group=out_group or str(datetime.datetime.now()))
        with h5py.File(filename, "r") as f:
            if in_group is None:
                if len(f) != 1:
                    raise ValueError("Input group not specified and multiple groups are present")
                in_group = next(iter(f))
            has_raw = "data" in f[in_group]
            image_groups = [k for k in f[in_group] if k.startswith(("image_", "images_"))]
            has_waveforms = "waveforms" in f[in_group]
            run.sent_json = self.json_text(f[in_group], config, config_local, Path(cwd or "."), ignore_json_config)

        # The client reads the input while it sends; here it is read first, so that the receiver is the only
        # thread using HDF5 during the session (the bytes on the wire are the same).
        dset = ismrmrd.Dataset(str(filename), in_group, create_if_needed=False)
        try:
            xml = dset.read_xml_header().decode() if "xml" in dset.list() else "Dummy XML header"
            data = self._read_data(dset, has_raw, image_groups, has_waveforms and send_waveforms)
        finally:
            dset.close()
        sock = self._connect()
        receiver = threading.Thread(target=self._receive, args=(sock, run), daemon=True)
        receiver.start()
        # config, header and JSON sends are unguarded there too (a failure ends the client)
        if config_local:
            sock.sendall(_nul_text(2, Path(config_local).read_text()))
        else:
            name = config.encode()[:CONFIG_FILE_BYTES]
            sock.sendall(struct.pack("<H", 1) + name.ljust(CONFIG_FILE_BYTES, b"\0"))
        sock.sendall(_nul_text(3, xml))
        if run.sent_json is not None:
            sock.sendall(_nul_text(5, run.sent_json))
        for group in data:  # waveforms, acquisitions, images: a failed send ends that group's loop
            for msg in group:
                try:
                    sock.sendall(msg)
                except OSError as exc:  # 'Failed to send acquisition %d -- aborting!'
                    run.send_failed = f"{type(exc).__name__}: {exc}"
                    break
        try:
            sock.sendall(struct.pack("<H", 4))
        except OSError:
            pass  # 'Failed to send close message!'
        receiver.join(self.timeout)
        run.hung = receiver.is_alive()
        sock.close()
        out = ismrmrd.Dataset(str(outfile), run.out_group)
        out.write_xml_header(xml.encode())
        out.close()
        return run

    def _connect(self) -> socket.socket:
        for attempt in range(5):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.connect((self.address, self.port))
                return sock
            except OSError:
                sock.close()
                if attempt < 4:
                    time.sleep(1)
        raise ConnectionError(f"could not connect to {self.address}:{self.port}")

    @staticmethod
    def _read_data(dset, has_raw: bool, image_groups: list, waveforms: bool) -> list[list[bytes]]:
        """The messages the client sends after the header, in its order: [waveforms, acquisitions, images...]."""
        def message(msg_id: int, item) -> bytes:
            parts = [struct.pack("<H", msg_id)]
            item.serialize_into(parts.append)
            return b"".join(bytes(p) for p in parts)

        out = [[message(1026, dset.read_waveform(i)) for i in range(dset.number_of_waveforms())] if waveforms else [],
               [message(1008, dset.read_acquisition(i)) for i in range(dset.number_of_acquisitions())] if has_raw
               else []]
        out += [[message(1022, dset.read_image(g, i)) for i in range(dset.number_of_images(g))] for g in image_groups]
        return out
