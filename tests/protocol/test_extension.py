# SPDX-License-Identifier: MIT
"""qompr's protocol extension (named initiators, TEST UNIT READY), both sides, sans-IO.

Every byte of the identify message comes from a client the root daemon does not trust:
truncated, oversized, out-of-order and unasked messages must close the connection, and
every descriptor the connection was handed must be closed.
"""

from __future__ import annotations

import struct

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings

from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError
from qompr.protocol import NEED_DATA
from qompr.protocol import ConnectionClosed
from qompr.protocol import Feature
from qompr.protocol import Granted
from qompr.protocol import Handshake
from qompr.protocol import HelperConnection
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol import Identify
from qompr.protocol import Negotiated
from qompr.protocol import ReadSpec
from qompr.protocol import Role
from qompr.protocol import State
from qompr.protocol.extension import IDENTIFY_OPCODE
from qompr.protocol.extension import MAX_NAME
from qompr.protocol.extension import QOMPR_FEATURES
from qompr.protocol.extension import identify_name_length
from qompr.protocol.extension import refusal_text
from qompr.testing import pr_in

from .helpers import FdLedger

NAMING = Feature.QOMPR_NAMING
TUR = Feature.QOMPR_TEST_UNIT_READY
TUR_CDB = bytes(16)


def assert_state(conn: HelperConnection, state: State) -> None:
    assert conn.state is state


def word(value: int) -> bytes:
    return struct.pack(">I", value)


def server(ledger: FdLedger, requested: int, granted: Feature) -> HelperConnection:
    """A qompr server connection that granted *granted* of *requested*."""
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close, extensions=True)
    assert conn.send(Handshake()) == word(0)  # announces nothing, as qemu-pr-helper
    conn.receive_data(word(requested))
    assert conn.next_event() == Negotiated(requested)
    assert_state(conn, State.SEND_GRANT)
    assert conn.next_event() is NEED_DATA  # nothing is read until the grant is out
    assert conn.next_read() == ReadSpec(0, False)
    assert conn.send(Granted(granted)) == word(int(granted))
    assert_state(conn, State.IDLE)
    return conn


def client(granted: Feature, requested: Feature | None = None) -> HelperConnection:
    conn = HelperConnection(Role.CLIENT)
    conn.receive_data(word(0))
    assert conn.next_event() == Negotiated(0)
    asked = granted if requested is None else requested
    assert conn.send(Handshake(asked)) == word(int(asked))
    assert_state(conn, State.RECV_GRANT)
    assert conn.waiting_for_peer
    assert conn.next_read() == ReadSpec(4, False)
    conn.receive_data(word(int(granted)))
    assert conn.next_event() == Granted(granted)
    assert_state(conn, State.IDLE)
    return conn


def closes(conn: HelperConnection, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        while conn.next_event() is not NEED_DATA:
            pass
    assert_state(conn, State.ERROR)


# -- the values --------------------------------------------------------------------------------


def test_identify_round_trips_with_and_without_a_port() -> None:
    named = Identify("iqn.2026-12.org.example:node1", 7)
    raw = named.to_bytes()
    assert raw[0] == IDENTIFY_OPCODE and raw[1] == 1 and raw[2:4] == b"\0\7"
    assert raw[7:9] == len(named.initiator).to_bytes(2, "big")
    assert Identify.from_bytes(raw) == named
    plain = Identify("node1")
    assert plain.to_bytes()[1:4] == b"\0\0\0"
    assert Identify.from_bytes(plain.to_bytes()) == plain


@pytest.mark.parametrize(
    ("initiator", "port"),
    [
        ("", None),
        ("x" * (MAX_NAME + 1), None),
        ("a b", None),
        ("nöde", None),
        ("a", 0),
        ("a", 65536),
    ],
)
def test_identify_refuses_what_it_cannot_carry(initiator: str, port: int | None) -> None:
    with pytest.raises(LocalProtocolError):
        Identify(initiator, port)


def test_the_longest_name_fits() -> None:
    longest = Identify("n" * MAX_NAME, 65535)
    assert Identify.from_bytes(longest.to_bytes()) == longest


def header(**changes: int) -> bytearray:
    raw = bytearray(Identify("node1").to_bytes()[:16])
    for index, value in changes.items():
        raw[int(index[1:])] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (header()[:15], "15 bytes, not 16"),
        (header(b0=0x5E), "not identify"),
        (header(b1=0x02), "reserved bits"),
        (header(b1=0x01), "does not match its flag"),  # flagged, port 0
        (header(b3=0x05), "does not match its flag"),  # port without the flag
        (header(b5=1), "reserved bytes"),
        (header(b15=1), "reserved bytes"),
        (header(b8=0), r"length 0 is not"),
        (header(b7=0, b8=MAX_NAME + 1), r"length 224 is not"),
        (header(b7=0xFF, b8=0xFF), r"length 65535 is not"),
    ],
)
def test_hostile_identify_headers(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        identify_name_length(bytes(raw))


def test_identify_from_bytes_wants_exactly_the_announced_name() -> None:
    raw = Identify("node1").to_bytes()
    with pytest.raises(RemoteProtocolError, match="header says"):
        Identify.from_bytes(raw[:-1])
    with pytest.raises(RemoteProtocolError, match="header says"):
        Identify.from_bytes(raw + b"x")
    with pytest.raises(RemoteProtocolError, match="printable"):
        Identify.from_bytes(raw[:-1] + b"\0")


def test_grant_word() -> None:
    assert Granted(NAMING | TUR).to_bytes() == word(0x60000000)
    assert Granted.from_bytes(word(0x20000000)) == Granted(TUR)
    with pytest.raises(RemoteProtocolError, match="unknown"):
        Granted.from_bytes(word(0x80000000))
    with pytest.raises(RemoteProtocolError, match="4 bytes"):
        Granted.from_bytes(b"\0\0")


def test_qompr_bits_are_far_from_qemus() -> None:
    # QEMU allocates from bit 0 (CLEANUP); the differential suite probes bit 31.
    assert int(QOMPR_FEATURES) == 0x60000000
    assert not QOMPR_FEATURES & 0x8000FFFF


def test_refusal_texts() -> None:
    assert refusal_text("/s", NAMING | TUR, NAMING | TUR, 1000) is None
    text = refusal_text("/s", NAMING | TUR, TUR, 1000)
    assert text == (
        "Failed to negotiate with '/s': the helper does not let uid 1000 name its initiator"
        " (qompr-pr-helper --allow-naming-uid)"
    )


# -- the server side ---------------------------------------------------------------------------


@pytest.mark.parametrize("requested", [0x40000000, 0x20000000, 0x60000000])
def test_a_plain_server_closes_on_qompr_bits_as_qemu_7_2(ledger: FdLedger, requested: int) -> None:
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close)
    conn.send(Handshake())
    conn.receive_data(word(requested))
    closes(conn, "Unsupported features")


@pytest.mark.parametrize("requested", [0x1, 0x80000000, 0x40000001, 0xE0000000, 0xFFFFFFFF])
def test_qompr_server_closes_on_any_other_bit(ledger: FdLedger, requested: int) -> None:
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close, extensions=True)
    conn.send(Handshake())
    conn.receive_data(word(requested))
    closes(conn, "Unsupported features")


def test_qemus_handshake_is_unchanged_on_a_qompr_server(ledger: FdLedger) -> None:
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close, extensions=True)
    conn.send(Handshake())
    conn.receive_data(word(0))
    assert conn.next_event() == Negotiated(0)
    assert_state(conn, State.IDLE)
    assert conn.granted == Feature.NONE
    with pytest.raises(LocalProtocolError):
        conn.send(Granted(Feature.NONE))  # nothing was asked: no grant word


def test_server_cannot_grant_more_than_asked_or_announce_bits(ledger: FdLedger) -> None:
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close, extensions=True)
    with pytest.raises(LocalProtocolError):
        conn.send(Handshake(TUR))
    conn.send(Handshake())
    conn.receive_data(word(int(TUR)))
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="granting"):
        conn.send(Granted(NAMING | TUR))


def test_identify_is_read_like_a_pr_out_request(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    raw = Identify("node1", 2).to_bytes()
    assert conn.next_read() == ReadSpec(16, True)
    conn.receive_data(raw[:16])
    assert conn.next_event() is NEED_DATA
    assert_state(conn, State.RECV_DATA)
    assert conn.next_read() == ReadSpec(5, False)
    conn.receive_data(raw[16:18])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(raw[18:])
    assert conn.next_event() == Identify("node1", 2)
    assert_state(conn, State.PROCESSING)
    with pytest.raises(LocalProtocolError):
        conn.send(HelperResponse(0, b"", b"x"))  # an identify answer has no data
    assert conn.send(HelperResponse(0)) == bytes(104)
    assert_state(conn, State.IDLE)
    # Then commands as usual, on the named nexus.
    fd = ledger.new()
    conn.receive_data(pr_in(), [fd])
    assert conn.next_event() == HelperRequest(pr_in(), fd)


def test_identify_not_granted_closes_as_an_invalid_cdb(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING | TUR), TUR)  # a uid that may not name itself
    conn.receive_data(Identify("node1").to_bytes())
    closes(conn, "Invalid CDB")


def test_identify_unasked_on_a_plain_connection_closes(ledger: FdLedger) -> None:
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close, extensions=True)
    conn.send(Handshake())
    conn.receive_data(word(0))
    conn.next_event()
    conn.receive_data(Identify("node1").to_bytes())
    closes(conn, "No file descriptor")  # qemu-pr-helper's fate for the same bytes


def test_identify_after_a_command_closes(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    fd = ledger.new()
    conn.receive_data(pr_in(), [fd])
    assert isinstance(conn.next_event(), HelperRequest)
    conn.send(HelperResponse(0, b"", bytes(8)))
    conn.receive_data(Identify("node1").to_bytes())
    closes(conn, "identify after the first message")


def test_a_second_identify_closes(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    conn.receive_data(Identify("node1").to_bytes())
    assert conn.next_event() == Identify("node1")
    conn.send(HelperResponse(0))
    conn.receive_data(Identify("node2").to_bytes())
    closes(conn, "identify after the first message")


def test_identify_with_a_descriptor_closes_and_closes_it(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    fd = ledger.new()
    conn.receive_data(Identify("node1").to_bytes(), [fd])
    closes(conn, "file descriptor came with identify")
    assert ledger.closed == [fd]


def test_descriptor_on_the_name_is_dropped(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    raw = Identify("node1").to_bytes()
    fd = ledger.new()
    conn.receive_data(raw[:16])
    conn.receive_data(raw[16:], [fd])
    assert conn.next_event() == Identify("node1")
    assert ledger.closed == [fd]  # read without a control buffer, as a parameter list


@pytest.mark.parametrize("cut", [3, 15, 16, 20])
def test_truncated_identify_then_eof_closes(ledger: FdLedger, cut: int) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    conn.receive_data(Identify("node1.example").to_bytes()[:cut])
    assert conn.next_event() is NEED_DATA
    assert conn.waiting_for_peer  # the daemon's stall clock runs
    conn.receive_data(b"")
    closes(conn, "end-of-file")


def test_oversized_identify_closes_before_reading_the_name(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    raw = bytearray(Identify("node1").to_bytes()[:16])
    raw[7:9] = (0xFFFF).to_bytes(2, "big")
    conn.receive_data(bytes(raw))
    closes(conn, "length 65535")
    assert conn.next_read() == ReadSpec(0, False)  # nothing more is read


def test_garbage_name_closes(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    raw = bytearray(Identify("node1").to_bytes())
    raw[-1] = 0x20
    conn.receive_data(bytes(raw))
    closes(conn, "printable")


def test_tur_granted_is_a_request_with_its_fd(ledger: FdLedger) -> None:
    conn = server(ledger, int(TUR), TUR)
    fd = ledger.new()
    conn.receive_data(TUR_CDB, [fd])
    assert conn.next_event() == HelperRequest(TUR_CDB, fd)
    with pytest.raises(LocalProtocolError):
        conn.send(HelperResponse(0, b"", b"x"))
    conn.send(HelperResponse(2, b"\x70\0\x06"))
    assert_state(conn, State.IDLE)


def test_tur_not_granted_closes(ledger: FdLedger) -> None:
    conn = server(ledger, int(NAMING), NAMING)
    fd = ledger.new()
    conn.receive_data(TUR_CDB, [fd])
    closes(conn, "Invalid CDB")
    assert ledger.closed == [fd]


def test_tur_without_a_descriptor_closes(ledger: FdLedger) -> None:
    conn = server(ledger, int(TUR), TUR)
    conn.receive_data(TUR_CDB)
    closes(conn, "No file descriptor")


def test_other_opcodes_still_close_with_the_extension(ledger: FdLedger) -> None:
    conn = server(ledger, int(QOMPR_FEATURES), QOMPR_FEATURES)
    fd = ledger.new()
    conn.receive_data(bytes([0xFF]) + bytes(15), [fd])  # QEMU's in-flight CLEANUP
    closes(conn, "Invalid CDB")
    assert ledger.closed == [fd]


# -- the client side ---------------------------------------------------------------------------


def test_client_asks_only_for_qompr_bits() -> None:
    conn = HelperConnection(Role.CLIENT)
    conn.receive_data(word(0))
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Handshake(Feature(1)))


def test_client_refuses_a_grant_it_did_not_ask_for() -> None:
    conn = HelperConnection(Role.CLIENT)
    conn.receive_data(word(0))
    conn.next_event()
    conn.send(Handshake(TUR))
    conn.receive_data(word(int(NAMING | TUR)))
    closes(conn, "not asked for")


def test_client_sees_the_helper_hang_up_instead_of_granting() -> None:
    conn = HelperConnection(Role.CLIENT)
    conn.receive_data(word(0))
    conn.next_event()
    conn.send(Handshake(NAMING))
    conn.receive_data(b"")
    closes(conn, "end-of-file")


def test_client_sends_identify_only_when_granted_and_first() -> None:
    refused = client(TUR, NAMING | TUR)
    with pytest.raises(LocalProtocolError, match="did not grant"):
        refused.send(Identify("node1"))
    conn = client(NAMING)
    assert conn.send(Identify("node1")) == Identify("node1").to_bytes()
    assert_state(conn, State.AWAIT_RESPONSE)
    conn.receive_data(bytes(104))
    assert conn.next_event() == HelperResponse(0, bytes(96), b"")
    with pytest.raises(LocalProtocolError, match="first message"):
        conn.send(Identify("node2"))


def test_client_refuses_data_with_the_identify_answer() -> None:
    conn = client(NAMING)
    conn.send(Identify("node1"))
    conn.receive_data(struct.pack(">ii", 0, 4) + bytes(96) + b"abcd")
    closes(conn, "for identify")


def test_client_sends_tur_only_when_granted() -> None:
    plain = client(NAMING)
    with pytest.raises(LocalProtocolError, match="not PR IN"):
        plain.send(HelperRequest(TUR_CDB, 5))
    conn = client(TUR)
    assert conn.send(HelperRequest(bytes(6), 5)) == TUR_CDB
    conn.receive_data(struct.pack(">ii", 0, 1) + bytes(96) + b"x")
    closes(conn, "for TEST UNIT READY")


# -- fuzzing the extension's server side ------------------------------------------------------

_EXT_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            bytes(4),
            word(0x20000000),
            word(0x40000000),
            word(0x60000000),
            word(0x60000001),
            TUR_CDB,
            pr_in(),
            Identify("node1").to_bytes(),
            Identify("n" * MAX_NAME, 65535).to_bytes(),
        ]
    ),
    st.integers(0, 0xFFFF).map(
        lambda n: bytes([0xC1, 0, 0, 0, 0, 0, 0, n >> 8, n & 0xFF]) + bytes(7)
    ),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    chunks=st.lists(st.tuples(_EXT_PIECES, st.integers(0, 2)), max_size=12),
    grant_mask=st.sampled_from([0, int(TUR), int(NAMING), int(QOMPR_FEATURES)]),
    handshake=st.sampled_from([0, 0x20000000, 0x40000000, 0x60000000, 0x60000001]),
    first=st.sampled_from([(Identify("a", 2).to_bytes(), 0), (TUR_CDB, 1), (pr_in(), 1)]),
    eof=st.booleans(),
)
def test_extension_input_never_crashes_and_never_leaks_an_fd(
    chunks: list[tuple[bytes, int]],
    grant_mask: int,
    handshake: int,
    first: tuple[bytes, int],
    eof: bool,
) -> None:
    ledger = FdLedger()
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close, extensions=True)
    conn.send(Handshake())
    given_fds: list[int] = []
    delivered: list[int] = []
    alive = True

    def drive() -> bool:
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError:
                return False
            if event is NEED_DATA:
                if conn.state is State.SEND_GRANT:
                    assert isinstance(conn.send(Granted(Feature(grant_mask & requested[0]))), bytes)
                    continue
                return True
            if isinstance(event, ConnectionClosed):
                return False
            if isinstance(event, Negotiated):
                requested[0] = event.features
                continue
            if isinstance(event, Identify):
                assert conn.granted & NAMING
                assert 1 <= len(event.initiator) <= MAX_NAME
                conn.send(HelperResponse(0))
                continue
            assert isinstance(event, HelperRequest)
            assert event.opcode in (0x5E, 0x5F) or (event.opcode == 0 and conn.granted & TUR)
            delivered.append(event.fd)
            conn.send(HelperResponse(2, b"\x70"))

    requested = [0]
    for chunk, nfds in [(word(handshake), 0), first, *chunks]:
        fds = [ledger.new() for _ in range(nfds)]
        given_fds += fds
        rest = chunk
        while alive and (rest or fds):
            # Read as the daemon reads: what next_read() asks for, fds only when it says so.
            spec = conn.next_read()
            size = spec.size or len(rest)
            piece, rest = rest[:size], rest[size:]
            if fds and not spec.fds:
                for fd in fds:  # the kernel drops fds read without a control buffer
                    ledger.close(fd)
                fds = []
            if not piece and not fds:
                break
            conn.receive_data(piece, fds)
            fds = []
            alive = drive()
        for fd in fds:  # never sent: the connection was over
            ledger.close(fd)
    if eof and alive:
        conn.receive_data(b"")
        drive()
    conn.close()
    assert sorted(delivered + ledger.closed) == sorted(given_fds)
