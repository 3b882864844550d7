# SPDX-License-Identifier: MIT
"""Hypothesis fuzzing of the server parser: hostile bytes and fds never crash it, only close it,
and every fd it is given is either handed out once or closed once."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings

from qompr.errors import RemoteProtocolError
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

from .helpers import FdLedger

# Pieces that make interesting streams more likely than uniform bytes would.
_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([bytes(4), b"\0\0\0\1", pr_in(), pr_in(alloc=8192), pr_in(alloc=8193)]),
    st.integers(0, 40).map(lambda n: pr_out(n) + bytes(n)),
    st.integers(0, 9000).map(pr_out),
)
_CHUNKS = st.lists(st.tuples(_PIECES, st.integers(0, 3)), max_size=12)


def _drive(conn: HelperConnection, ledger: FdLedger, delivered: list[int]) -> bool:
    """Take every event; answer requests.  False once the connection is over."""
    while True:
        try:
            event = conn.next_event()
        except RemoteProtocolError:
            assert conn.state is State.ERROR
            return False
        if event is NEED_DATA:
            return True
        if isinstance(event, ConnectionClosed):
            return False
        if isinstance(event, Negotiated):
            continue
        assert isinstance(event, HelperRequest)
        assert len(event.cdb) == 16 and event.opcode in (0x5E, 0x5F)
        assert event.transfer_length <= 8192
        if event.opcode == 0x5F:
            assert len(event.data) == event.transfer_length
        else:
            assert event.data == b""
        delivered.append(event.fd)
        conn.send(HelperResponse(2, b"\x70"))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(chunks=_CHUNKS, eof=st.booleans(), obey_read_spec=st.booleans())
def test_hostile_input_never_crashes_and_never_leaks_an_fd(
    chunks: list[tuple[bytes, int]], eof: bool, obey_read_spec: bool
) -> None:
    ledger = FdLedger()
    conn = HelperConnection(Role.SERVER, close_fd=ledger.close)
    conn.send(Handshake())
    given_fds: list[int] = []
    delivered: list[int] = []
    alive = True
    for piece, nfds in chunks:
        fds = [ledger.new() for _ in range(nfds)]
        given_fds += fds
        data = piece
        if obey_read_spec and alive:
            # Feed the way the daemon reads: at most what next_read() asks for.
            spec = conn.next_read()
            if spec.size:
                data = data[: spec.size]
            if not spec.fds and fds:
                for fd in fds:  # the kernel drops fds read without a control buffer
                    ledger.close(fd)
                fds = []
        if not data and not fds:
            continue
        conn.receive_data(data, fds)
        if alive:
            alive = _drive(conn, ledger, delivered)
    if eof and alive:
        conn.receive_data(b"")
        _drive(conn, ledger, delivered)
    conn.close()
    # Every fd was handed out exactly once, or closed exactly once, never both.
    assert sorted(delivered + ledger.closed) == sorted(given_fds)


_PR_IN = st.builds(
    lambda alloc, action: HelperRequest(pr_in(alloc=alloc, action=action), 0),
    st.integers(0, 8192),
    st.integers(0, 31),
)
_PR_OUT = st.integers(0, 300).flatmap(
    lambda n: st.binary(min_size=n, max_size=n).map(lambda d: HelperRequest(pr_out(n), 0, d))
)
_REQUESTS = st.one_of(_PR_IN, _PR_OUT)


@settings(max_examples=200, deadline=None)
@given(requests=st.lists(_REQUESTS, min_size=1, max_size=5), cut=st.integers(1, 50))
def test_what_a_client_sends_the_server_reads_back_in_any_chunking(
    requests: list[HelperRequest], cut: int
) -> None:
    client = HelperConnection(Role.CLIENT)
    server = HelperConnection(Role.SERVER, close_fd=lambda fd: None)
    client.receive_data(server.send(Handshake()))
    client.next_event()
    server.receive_data(client.send(Handshake()))
    assert server.next_event() == Negotiated(0)
    for n, request in enumerate(requests, start=1):
        wire = client.send(HelperRequest(request.cdb, n, request.data))
        server.receive_data(wire[:cut], [n])
        if wire[cut:]:
            server.receive_data(wire[cut:])
        got = server.next_event()
        assert got == HelperRequest(request.cdb, n, request.data)
        client.receive_data(server.send(HelperResponse(0)))
        assert client.next_event() == HelperResponse(0, bytes(96))
