# SPDX-License-Identifier: MIT
"""The client side of the sans-IO core: QEMU's checks, and the lying-helper checks it lacks."""

from __future__ import annotations

import struct

import pytest

from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError
from qompr.protocol import EOF_MESSAGE
from qompr.protocol import NEED_DATA
from qompr.protocol import ConnectionClosed
from qompr.protocol import Handshake
from qompr.protocol import HelperConnection
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol import Negotiated
from qompr.protocol import Role
from qompr.protocol import State
from qompr.testing import pr_in
from qompr.testing import pr_out


def header(status: int, size: int, sense: bytes = b"") -> bytes:
    return struct.pack(">ii", status, size) + sense.ljust(96, b"\0")


def idle_client() -> HelperConnection:
    conn = HelperConnection(Role.CLIENT)
    conn.receive_data(b"\0\0\0\0")
    assert conn.next_event() == Negotiated(0)
    assert conn.send(Handshake()) == b"\0\0\0\0"
    assert conn.state is State.IDLE
    return conn


def test_client_accepts_any_announced_features_like_qemu() -> None:
    conn = HelperConnection(Role.CLIENT)
    conn.receive_data(b"\xff\xff\xff\xff")
    assert conn.next_event() == Negotiated(0xFFFFFFFF)
    assert conn.send(Handshake()) == bytes(4)


def test_eof_during_handshake_has_qemus_text() -> None:
    conn = HelperConnection(Role.CLIENT)
    conn.receive_data(b"\0\0")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.message == EOF_MESSAGE == "Unexpected end-of-file before all data were read"


def test_request_is_cdb16_then_parameter_list() -> None:
    conn = idle_client()
    data = bytes(range(24))
    cdb10 = pr_out(24)[:10]
    out = conn.send(HelperRequest(cdb10, 7, data))
    assert out == pr_out(24) + data
    assert conn.state is State.AWAIT_RESPONSE


@pytest.mark.parametrize(
    "request_",
    [
        HelperRequest(bytes([0x12]), 3),  # not PR IN/OUT (QEMU asserts)
        HelperRequest(pr_in(), -1),  # no fd
        HelperRequest(pr_in(alloc=8193), 3),  # too long for the helper
        HelperRequest(pr_in(), 3, b"x"),  # PR IN has no parameter list
        HelperRequest(pr_out(24), 3, bytes(23)),  # short parameter list
    ],
)
def test_bad_requests_are_local_errors(request_: HelperRequest) -> None:
    conn = idle_client()
    with pytest.raises(LocalProtocolError):
        conn.send(request_)
    assert conn.state is State.IDLE


def test_cdb_longer_than_16_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        HelperRequest(bytes(17), 3)


def test_one_command_at_a_time() -> None:
    conn = idle_client()
    conn.send(HelperRequest(pr_in(), 3))
    with pytest.raises(LocalProtocolError):
        conn.send(HelperRequest(pr_in(), 3))


def test_response_with_payload_in_pieces() -> None:
    conn = idle_client()
    conn.send(HelperRequest(pr_in(alloc=16), 3))
    wire = header(0, 12) + b"k" * 12
    for i in range(len(wire) - 1):
        conn.receive_data(wire[i : i + 1])
        assert conn.next_event() is NEED_DATA
    conn.receive_data(wire[-1:])
    assert conn.next_event() == HelperResponse(0, bytes(96), b"k" * 12)
    assert conn.state is State.IDLE


@pytest.mark.parametrize(
    ("cdb", "wire"),
    [
        (pr_in(alloc=16), header(0, 17)),  # larger than asked (QEMU asserts)
        (pr_in(alloc=16), header(0, -1)),  # negative size
        (pr_in(alloc=8192), header(0, 8193)),  # beyond the protocol's buffer
        (pr_out(24), header(0, 4)),  # data on PR OUT (QEMU asserts)
        (pr_in(), header(2, 4)),  # data with CHECK CONDITION
        (pr_in(), header(256, 0)),  # not a status byte
        (pr_in(), header(-1, 0)),
        (pr_in(), header(0, 0) + b"junk"),  # bytes nobody asked for
    ],
)
def test_a_lying_helper_is_a_remote_error(cdb: bytes, wire: bytes) -> None:
    conn = idle_client()
    data = bytes(24) if cdb[0] == 0x5F else b""
    conn.send(HelperRequest(cdb, 3, data))
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR


def test_eof_awaiting_response_is_a_remote_error() -> None:
    conn = idle_client()
    conn.send(HelperRequest(pr_in(), 3))
    conn.receive_data(header(2, 0)[:50])
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="end-of-file"):
        conn.next_event()


def test_idle_hangup_is_connection_closed_and_junk_is_an_error() -> None:
    conn = idle_client()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    conn2 = idle_client()
    conn2.receive_data(b"x")
    with pytest.raises(RemoteProtocolError, match="unsolicited"):
        conn2.next_event()


def test_descriptors_from_the_helper_are_refused() -> None:
    closed: list[int] = []
    conn = HelperConnection(Role.CLIENT, close_fd=closed.append)
    conn.receive_data(b"\0\0\0\0", [42])
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert closed == [42]


def test_client_and_server_cores_talk_to_each_other() -> None:
    client = HelperConnection(Role.CLIENT)
    server = HelperConnection(Role.SERVER, close_fd=lambda fd: None)
    client.receive_data(server.send(Handshake()))
    assert client.next_event() == Negotiated(0)
    server.receive_data(client.send(Handshake()))
    assert server.next_event() == Negotiated(0)
    for request in (
        HelperRequest(pr_in(alloc=40), 5),
        HelperRequest(pr_out(24), 6, bytes(range(24))),
    ):
        wire = client.send(request)
        server.receive_data(wire[:1], [request.fd])
        server.receive_data(wire[1:])
        got = server.next_event()
        assert got == request
        answer = (
            HelperResponse(0, b"", b"d" * 40) if request.opcode == 0x5E else HelperResponse(0x18)
        )
        client.receive_data(server.send(answer))
        received = client.next_event()
        assert received == HelperResponse(answer.status, bytes(96), answer.data)
