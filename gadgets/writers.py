"""The bytes of the protocol messages this project sends (ids and layouts: :mod:`gadgets.protocol`).

The replay client sends CONFIG_FILE or CONFIG_SCRIPT, HEADER (the file's XML as it is),
acquisitions and CLOSE; the server answers with images, TEXT, RESPONSE, the dependency
query answer and CLOSE; the external gadget reports a failure to Gadgetron as ERROR.
"""

from __future__ import annotations

import struct

import ismrmrd

from gadgets.protocol import (ACQUISITION, CLOSE, CONFIG_FILE, CONFIG_FILE_BYTES, CONFIG_SCRIPT, DEPENDENCY_QUERY,
                              ERROR, HEADER, IMAGE, RESPONSE, TEXT)
from recon.errors import InputError


def _serialized(msg_id: int, item) -> bytes:
    parts = [struct.pack("<H", msg_id)]
    item.serialize_into(parts.append)
    return b"".join(bytes(p) for p in parts)


def config_file_message(config: str) -> bytes:
    data = config.encode("utf-8")
    if len(data) >= CONFIG_FILE_BYTES:
        raise InputError(f"config name too long for CONFIG_FILE ({len(data)} bytes; at most {CONFIG_FILE_BYTES - 1})")
    return struct.pack("<H", CONFIG_FILE) + data.ljust(CONFIG_FILE_BYTES, b"\0")


def config_script_message(xml: str | bytes) -> bytes:
    data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    return struct.pack("<HI", CONFIG_SCRIPT, len(data)) + data


def header_message(xml: str | bytes) -> bytes:
    """HEADER: the ISMRMRD XML as given (not re-serialised)."""
    data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    return struct.pack("<HI", HEADER, len(data)) + data


def acquisition_message(acq: ismrmrd.Acquisition) -> bytes:
    return _serialized(ACQUISITION, acq)


def text_message(text: str) -> bytes:
    data = text.encode("utf-8", errors="replace")
    return struct.pack("<HI", TEXT, len(data)) + data


def error_message(text: str) -> bytes:
    data = text.encode("utf-8", errors="replace")
    return struct.pack("<HQ", ERROR, len(data)) + data


def close_message() -> bytes:
    return struct.pack("<H", CLOSE)


def response_message(correlation_id: int, answer: str) -> bytes:
    data = answer.encode("utf-8", errors="replace")
    return struct.pack("<HQQ", RESPONSE, correlation_id, len(data)) + data


def dependency_query_message(meta_xml: str) -> bytes:
    data = meta_xml.encode("utf-8")
    return struct.pack("<HQ", DEPENDENCY_QUERY, len(data)) + data


def image_message(image: ismrmrd.Image) -> bytes:
    return _serialized(IMAGE, image)
