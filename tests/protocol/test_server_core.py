# SPDX-License-Identifier: MIT
"""The server side of the sans-IO core, against qemu-pr-helper 7.2's rules
(docs/reference/qemu-pr-helper.md §2-§6)."""

from __future__ import annotations

import struct

import pytest

from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError
from qompr.protocol import NEED_DATA
from qompr.protocol import ConnectionClosed
from qompr.protocol import Handshake
from qompr.protocol import HelperConnection
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol import Negotiated
from qompr.protocol import ReadSpec
from qompr.protocol import Role
from qompr.protocol import State
from qompr.testing import pr_in
from qompr.testing import pr_out

from .helpers import FdLedger


def negotiated(ledger: FdLedger) -> HelperConnection:
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close)
    assert conn.send(Handshake()) == b"\0\0\0\0"
    conn.receive_data(b"\0\0\0\0")
    assert conn.next_event() == Negotiated(0)
    assert conn.state is State.IDLE
    return conn


def test_server_speaks_first_and_reads_exactly_four_bytes_without_fds() -> None:
    conn = HelperConnection(Role.SERVER)
    assert conn.state is State.SEND_FEATURES
    assert conn.next_event() is NEED_DATA
    conn.send(Handshake())
    assert conn.next_read() == ReadSpec(4, False)
    conn.receive_data(b"\0\0")
    assert conn.next_event() is NEED_DATA
    assert conn.next_read() == ReadSpec(2, False)


def test_nonzero_requested_features_close(ledger: FdLedger) -> None:
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close)
    conn.send(Handshake())
    conn.receive_data(struct.pack(">I", 1))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.next_event()


def test_fds_sent_with_the_handshake_are_closed_not_stashed(ledger: FdLedger) -> None:
    # qemu-pr-helper reads the features without a control buffer: the kernel drops the fd,
    # so a CDB that relied on it has none.
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close)
    conn.send(Handshake())
    fd = ledger.new()
    conn.receive_data(b"\0\0\0\0" + pr_in(), [fd])
    assert conn.next_event() == Negotiated(0)
    assert ledger.closed == [fd]
    with pytest.raises(RemoteProtocolError, match=r"No file descriptor in request\."):
        conn.next_event()


def test_pr_in_request_carries_its_fd(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    assert conn.next_read() == ReadSpec(16, True)
    conn.receive_data(pr_in(alloc=255), [fd])
    event = conn.next_event()
    assert event == HelperRequest(pr_in(alloc=255), fd, b"")
    assert isinstance(event, HelperRequest)
    assert event.transfer_length == 255
    assert conn.state is State.PROCESSING
    assert ledger.closed == []  # the fd now belongs to whoever executes the request


def test_pr_out_reads_exactly_bytes_7_8_of_parameter_data(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    # SPC's length field is bytes 5-8; QEMU's group-2 rule reads only 7-8: 0x0018 here.
    cdb = bytes([0x5F, 0, 0, 0, 0, 0xFF, 0xFF, 0, 24, 0])
    conn.receive_data(cdb.ljust(16, b"\0"), [fd])
    assert conn.next_event() is NEED_DATA
    assert conn.state is State.RECV_DATA
    assert conn.next_read() == ReadSpec(24, False)
    conn.receive_data(bytes(range(24)) + pr_in())
    event = conn.next_event()
    assert isinstance(event, HelperRequest)
    assert event.data == bytes(range(24))
    conn.send(HelperResponse(2))
    assert conn.state.value == "IDLE"  # the PR IN after it is the next request


def test_pr_out_with_zero_length_needs_no_data(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    conn.receive_data(pr_out(length=0), [fd])
    assert conn.next_event() == HelperRequest(pr_out(length=0), fd, b"")


def test_fds_attached_to_the_parameter_list_are_closed(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd, extra = ledger.new(), ledger.new()
    conn.receive_data(pr_out(length=24), [fd])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(bytes(24), [extra])
    event = conn.next_event()
    assert isinstance(event, HelperRequest) and event.fd == fd
    assert ledger.closed == [extra]


def test_a_cdb_split_in_two_may_carry_its_fd_on_the_second_part(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    conn.receive_data(pr_in()[:5])
    assert conn.next_event() is NEED_DATA
    assert conn.next_read() == ReadSpec(11, True)
    conn.receive_data(pr_in()[5:], [fd])
    assert conn.next_event() == HelperRequest(pr_in(), fd)


@pytest.mark.parametrize("split", [False, True])
def test_two_fds_on_one_cdb_close_and_every_fd_is_closed(ledger: FdLedger, split: bool) -> None:
    conn = negotiated(ledger)
    a, b = ledger.new(), ledger.new()
    if split:
        conn.receive_data(pr_in()[:8], [a])
        assert conn.next_event() is NEED_DATA
        conn.receive_data(pr_in()[8:], [b])
    else:
        conn.receive_data(pr_in(), [a, b])
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert sorted(ledger.closed) == sorted([a, b])


def test_no_fd_closes_with_qemu_text(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    conn.receive_data(pr_in())
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.message == "No file descriptor in request."
    assert conn.error == "No file descriptor in request."


@pytest.mark.parametrize("opcode", [0x00, 0x12, 0x5D, 0x60, 0xFF])
def test_other_opcodes_close_and_close_the_fd(ledger: FdLedger, opcode: int) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    conn.receive_data(bytes([opcode]).ljust(16, b"\0"), [fd])
    with pytest.raises(RemoteProtocolError, match=r"Invalid CDB, closing socket\."):
        conn.next_event()
    assert ledger.closed == [fd]


@pytest.mark.parametrize(
    ("opcode", "length", "ok"),
    [(0x5E, 8192, True), (0x5E, 8193, False), (0x5F, 8193, False), (0x5E, 65535, False)],
)
def test_transfer_length_limit_is_8192(
    ledger: FdLedger, opcode: int, length: int, ok: bool
) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    cdb = bytes([opcode, 0, 0, 0, 0, 0, 0]) + length.to_bytes(2, "big")
    conn.receive_data(cdb.ljust(16, b"\0"), [fd])
    if ok:
        assert isinstance(conn.next_event(), HelperRequest)
    else:
        with pytest.raises(RemoteProtocolError):
            conn.next_event()
        assert ledger.closed == [fd]


def test_pipelined_requests_each_take_their_own_fd(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    a, b = ledger.new(), ledger.new()
    conn.receive_data(pr_in(), [a])
    conn.receive_data(pr_in(alloc=8), [b])
    assert conn.next_event() == HelperRequest(pr_in(), a)
    assert conn.next_event() is NEED_DATA  # one response before the next request
    conn.send(HelperResponse(0))
    assert conn.next_event() == HelperRequest(pr_in(alloc=8), b)


def test_one_fd_for_two_pipelined_cdbs_closes_on_the_second(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    a = ledger.new()
    conn.receive_data(pr_in() + pr_in(), [a])
    assert conn.next_event() == HelperRequest(pr_in(), a)
    conn.send(HelperResponse(0))
    with pytest.raises(RemoteProtocolError, match="No file descriptor"):
        conn.next_event()


def test_eof_between_requests_is_a_clean_close(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.state is State.CLOSED


def test_eof_inside_a_cdb_closes_the_stashed_fd(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    conn.receive_data(pr_in()[:7], [fd])
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="end-of-file"):
        conn.next_event()
    assert ledger.closed == [fd]


def test_eof_inside_parameter_data(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    conn.receive_data(pr_out(length=24) + bytes(10), [fd])
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert ledger.closed == [fd]


def test_response_framing_pads_sense_to_96_zero_bytes(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    conn.receive_data(pr_in(alloc=16), [ledger.new()])
    conn.next_event()
    out = conn.send(HelperResponse(0, b"\x70\0\x05", b"x" * 16))
    assert out[:8] == struct.pack(">ii", 0, 16)
    assert out[8:104] == b"\x70\0\x05" + bytes(93)
    assert out[104:] == b"x" * 16


@pytest.mark.parametrize(
    ("cdb", "response"),
    [
        (pr_in(alloc=16), HelperResponse(0, b"", b"x" * 17)),  # more than the allocation length
        (pr_in(alloc=16), HelperResponse(2, b"", b"x")),  # data with a failed status
        (pr_out(length=0), HelperResponse(0, b"", b"x")),  # data for PR OUT
        (pr_in(), HelperResponse(0, bytes(97))),  # sense longer than 96
        (pr_in(), HelperResponse(2**31)),  # status beyond int32
    ],
)
def test_responses_breaking_the_invariant_are_refused(
    ledger: FdLedger, cdb: bytes, response: HelperResponse
) -> None:
    conn = negotiated(ledger)
    conn.receive_data(cdb, [ledger.new()])
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(response)


def test_responses_only_while_processing(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    with pytest.raises(LocalProtocolError, match="state IDLE"):
        conn.send(HelperResponse(0))


def test_close_releases_a_stashed_fd(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    fd = ledger.new()
    conn.receive_data(pr_in()[:3], [fd])
    assert conn.next_event() is NEED_DATA
    conn.close()
    assert ledger.closed == [fd]
    assert conn.state is State.ERROR


def test_fds_fed_after_an_error_are_closed_at_once(ledger: FdLedger) -> None:
    conn = negotiated(ledger)
    conn.receive_data(bytes(16))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    fd = ledger.new()
    conn.receive_data(pr_in(), [fd])
    assert ledger.closed == [fd]


def test_waiting_for_peer_only_while_the_client_owes_bytes() -> None:
    ledger = FdLedger()
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close)
    assert not conn.waiting_for_peer  # the server speaks first
    conn.send(Handshake())
    assert conn.waiting_for_peer  # the client's 4 bytes are due
    conn.receive_data(bytes(4))
    assert conn.next_event() == Negotiated(0)
    assert not conn.waiting_for_peer  # idle between commands: silence is allowed
    conn.receive_data(pr_out(24)[:5], [ledger.new()])
    assert conn.next_event() is NEED_DATA and conn.waiting_for_peer  # half a CDB
    conn.receive_data(pr_out(24)[5:])
    assert conn.next_event() is NEED_DATA and conn.state is State.RECV_DATA
    assert conn.waiting_for_peer  # the parameter list is due
    conn.receive_data(bytes(24))
    request = conn.next_event()
    assert isinstance(request, HelperRequest)
    assert not conn.waiting_for_peer  # our turn: the answer
    conn.send(HelperResponse(0))
    assert not conn.waiting_for_peer
