"""The one reader of the client protocol (gadgets.protocol.MessageReader) in both directions, and the
message writers (gadgets.writers) read back through it."""

from __future__ import annotations

import socket
import struct
import threading

import ismrmrd
import numpy as np
import pytest

from gadgets.client import query_noise
from gadgets.protocol import (FROM_SERVER, Close, ConfigFile, ConfigScript, DependencyQuery, Error, Header,
                              IdleTimeout, Limits, MessageReader, ProtocolError, Response, Text)
from gadgets.server import start_background
from gadgets.writers import (acquisition_message, close_message, config_file_message, config_script_message,
                             dependency_query_message, error_message, header_message, image_message,
                             response_message, text_message)
from recon.errors import CrunetError, InputError
from tests.conftest import FedSocket

LIMITS = Limits(max_message_bytes=1 << 20, message_timeout=2.0, idle_timeout=2.0)


def _read(data: bytes, **kwargs) -> list:
    """Every message of ``data`` (then EOF) read by a MessageReader over a socket pair, up to CLOSE."""
    with FedSocket(data) as sock:
        return list(MessageReader(sock, kwargs.pop("limits", LIMITS), **kwargs))


def _server_side(data: bytes) -> list:
    return _read(data, accept=FROM_SERVER, peer="server")


def _image() -> ismrmrd.Image:
    img = ismrmrd.Image.from_array(np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4), image_series_index=7)
    img.attribute_string = ismrmrd.Meta({"ImageComment": "x"}).serialize()
    return img


def test_what_a_server_sends_comes_back_typed():
    img = _image()
    meta = ismrmrd.Meta({"status": "success", "channels": "4"}).serialize()
    data = (image_message(img) + text_message("slice 1: broken") + response_message(9, "1")
            + dependency_query_message(meta) + error_message("boom") + close_message())
    got = _server_side(data)
    assert [type(m) for m in got] == [ismrmrd.Image, Text, Response, DependencyQuery, Error, Close]
    assert np.array_equal(got[0].data, img.data) and got[0].image_series_index == 7
    assert ismrmrd.Meta.deserialize(got[0].attribute_string)["ImageComment"] == "x"
    assert got[1:5] == [Text("slice 1: broken"), Response(9, "1"),
                        DependencyQuery({"status": "success", "channels": "4"}), Error("boom")]


def test_what_a_client_sends_comes_back_typed():
    acq = ismrmrd.Acquisition.from_array(np.ones((2, 8), np.complex64))
    xml = b'<?xml version="1.0"?>\n<ismrmrdHeader>\xc3\xa9</ismrmrdHeader>'
    data = (config_file_message("crunet_zf.xml") + config_script_message("<chain/>") + header_message(xml)
            + acquisition_message(acq) + close_message())
    got = _read(data)
    assert got[:3] == [ConfigFile("crunet_zf.xml"), ConfigScript("<chain/>"), Header(xml)]  # header bytes as sent
    assert isinstance(got[3], ismrmrd.Acquisition) and np.array_equal(got[3].data, acq.data)
    assert got[4] == Close()


def test_config_file_name_must_fit():
    with pytest.raises(InputError, match="too long for CONFIG_FILE"):
        config_file_message("x" * 1024)


@pytest.mark.parametrize("data, accept, expected", [
    (acquisition_message(ismrmrd.Acquisition.from_array(np.ones((1, 4), np.complex64))), FROM_SERVER,
     "unexpected message 1008 (acquisition): not one a server sends"),
    (image_message(_image()), None, "unexpected message 1022 (image): not one a client sends"),
    (struct.pack("<H", 777), FROM_SERVER, "unknown message id 777"),
])
def test_each_side_accepts_only_what_the_other_sends(data, accept, expected):
    kwargs = {} if accept is None else {"accept": accept, "peer": "server"}
    with pytest.raises(ProtocolError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        _read(data, **kwargs)


def test_image_size_is_checked_before_allocating():
    head = ismrmrd.ImageHeader()
    head.data_type = ismrmrd.DATATYPE_CXDOUBLE
    head.channels = 65535
    head.matrix_size[:] = (65535, 65535, 65535)
    data = struct.pack("<H", 1022) + bytes(head) + struct.pack("<Q", 0)
    with pytest.raises(ProtocolError, match=r"message 1022 \(image\) declares \d+ bytes; the limit is 1048576"):
        _server_side(data)


def test_unknown_image_data_type_and_bad_meta_are_protocol_errors():
    head = ismrmrd.ImageHeader()
    head.data_type = 99
    with pytest.raises(ProtocolError, match="unknown image data type 99"):
        _server_side(struct.pack("<H", 1022) + bytes(head) + struct.pack("<Q", 0))
    with pytest.raises(ProtocolError, match="not ISMRMRD Meta XML"):
        _server_side(dependency_query_message("<oops"))


def test_a_silent_server_is_an_idle_timeout():
    a, b = socket.socketpair()
    try:
        reader = MessageReader(a, Limits(idle_timeout=0.3), accept=FROM_SERVER, peer="server")
        with pytest.raises(IdleTimeout, match="server idle: no message for 0.3 s"):
            reader.next()
    finally:
        a.close()
        b.close()


def test_query_noise_reads_the_answer_through_the_reader():
    srv, _ = start_background(idle_timeout=20)
    try:
        assert query_noise("127.0.0.1", srv.port, "never-stored") == {"status": "failed"}
    finally:
        srv.shutdown(grace=0)
        srv.server_close()


def test_query_noise_reports_a_server_text():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)

    def serve():
        conn, _ = lst.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(65536)
            conn.sendall(text_message("no such chain") + close_message())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(CrunetError, match="dependency query: server says: no such chain"):
            query_noise("127.0.0.1", lst.getsockname()[1], "m1", timeout=10)
    finally:
        t.join(10)
        lst.close()
