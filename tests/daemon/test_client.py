# SPDX-License-Identifier: MIT
"""``pr-manager-helper`` (the client) against qompr's server core and against misbehaving
fake helpers: QEMU's reconnect policy and failure sense, and what qompr adds (timeouts, lying
helpers, idle hang-ups, a pool for threads, asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

import qompr
from qompr.errors import ConnectError
from qompr.errors import LocalProtocolError
from qompr.managers import PRManagerHelper
from qompr.managers import query_pr_managers
from qompr.protocol.retry import PR_MAX_RECONNECT_ATTEMPTS
from qompr.qom import ObjectTree
from qompr.scsi import SenseCode
from qompr.testing import InProcessServer
from qompr.transport.sync import HelperClient

READ_KEYS = bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 255, 0])
REGISTER = bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0])


class Events:
    def __init__(self) -> None:
        self.seen: list[bool] = []

    @qompr.hookimpl
    def qompr_pr_manager_status_changed(self, manager: Any, id: str, connected: bool) -> None:
        self.seen.append(connected)

    def wait_for(self, states: list[bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.seen != states and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.seen == states


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def tree(events: Events) -> ObjectTree:
    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(events)
    return qompr.new_tree(pm)


@pytest.fixture
def devnull() -> Iterator[int]:
    fd = os.open("/dev/null", os.O_RDWR)
    yield fd
    os.close(fd)


def new_helper(tree: ObjectTree, path: str, **tune: Any) -> PRManagerHelper:
    obj = tree.new_object("pr-manager-helper")
    assert isinstance(obj, PRManagerHelper)
    obj.reconnect_delay = 0.05
    for name, value in tune.items():
        setattr(obj, name, value)
    obj.set_property("path", path)
    tree.objects.add_child("h", obj)
    tree.complete(obj)
    return obj


class FakeHelper:
    """Listens on a socket; runs *handler(conn)* for each connection in a thread."""

    def __init__(self, handler: Callable[[socket.socket], None], path: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.path = path or os.path.join(self._tmp.name, "fake.sock")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.handler = handler
        self.accepted = 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handler(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()
        os.unlink(self.path)


def handshake(conn: socket.socket) -> None:
    conn.sendall(bytes(4))
    assert conn.recv(4) == bytes(4)


def read_request(conn: socket.socket) -> bytes:
    msg, fds, _, _ = socket.recv_fds(conn, 16, 4)
    for fd in fds:
        os.close(fd)
    return msg


def answering(*replies: bytes) -> Callable[[socket.socket], None]:
    """A helper that answers requests with the next raw reply (across connections), and
    hangs up a connection whose reply was cut short."""
    queue = list(replies)

    def handler(conn: socket.socket) -> None:
        handshake(conn)
        while queue:
            if not read_request(conn):
                return
            reply = queue.pop(0)
            conn.sendall(reply)
            if len(reply) < 104:
                conn.close()
                return
        conn.recv(1)

    return handler


def header(status: int, size: int) -> bytes:
    return struct.pack(">ii", status, size) + bytes(96)


# == creation ===================================================================================
def test_creation_fails_with_qemus_messages(tree: ObjectTree, events: Events) -> None:
    with pytest.raises(ConnectError) as info:
        new_helper(tree, "/nonexistent/helper.sock")
    assert info.value.message == (
        "Failed to connect to '/nonexistent/helper.sock': No such file or directory"
    )
    assert tree.find_object("h") is None
    fake = FakeHelper(lambda conn: conn.close())
    with pytest.raises(ConnectError) as info:
        new_helper(tree, fake.path)
    assert info.value.message == "Unexpected end-of-file before all data were read"
    assert events.seen == []  # no connected=true was ever sent, so no false either
    fake.close()


def test_a_helper_that_never_speaks_times_out(tree: ObjectTree) -> None:
    fake = FakeHelper(lambda conn: time.sleep(10))
    t0 = time.monotonic()
    with pytest.raises(ConnectError, match="Timed out"):
        new_helper(tree, fake.path, connect_timeout=0.3)
    assert time.monotonic() - t0 < 3  # QEMU would wait forever
    fake.close()


def test_caller_errors_raise(tree: ObjectTree, devnull: int) -> None:
    with InProcessServer() as srv:
        obj = new_helper(tree, srv.path)
        with pytest.raises(LocalProtocolError):
            obj.execute(devnull, bytes([0x12, 0, 0, 0, 36, 0]))
        with pytest.raises(LocalProtocolError):
            obj.execute(devnull, REGISTER, bytes(23))
        with pytest.raises(LocalProtocolError):
            obj.execute(devnull, b"")
        # PR OUT sends exactly bytes 7-8 worth; the rest is residue, as in QEMU.
        assert obj.execute(devnull, REGISTER, bytes(30)).sense_code == SenseCode.IO_ERROR
        assert srv.server.statistics().protocol_errors == 0


# == normal operation and the pool ================================================================
def test_commands_events_and_query(tree: ObjectTree, events: Events, devnull: int) -> None:
    with InProcessServer() as srv:
        obj = new_helper(tree, srv.path)
        assert events.seen == [True]
        assert query_pr_managers(tree) == [{"id": "h", "connected": True}]
        result = obj.execute(devnull, READ_KEYS)
        assert result.sense == SenseCode.IO_ERROR.to_bytes()  # trimmed to the sense's length
        assert obj.execute(devnull, REGISTER, bytes(24)).sense_code == SenseCode.IO_ERROR
        tree.object_del("h")
        deadline = time.monotonic() + 5
        while srv.server.statistics().connections_open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.server.statistics().connections_open == 0  # finalize closed it


def test_threads_share_a_small_pool(tree: ObjectTree, devnull: int) -> None:
    with InProcessServer() as srv:
        obj = new_helper(tree, srv.path, pool_size=3)
        before = srv.server.statistics().connections_accepted
        results: list[Any] = []

        def work() -> None:
            for _ in range(25):
                results.append(obj.execute(devnull, READ_KEYS).sense_code)

        threads = [threading.Thread(target=work) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [SenseCode.IO_ERROR] * 300
        stats = srv.server.statistics()
        assert stats.connections_accepted - before <= 2  # plus the one from complete()
        assert stats.requests == 300


# == failures ===================================================================================
def test_helper_dies_mid_command_then_comes_back(
    tree: ObjectTree, events: Events, devnull: int
) -> None:
    def dies(conn: socket.socket) -> None:
        handshake(conn)
        read_request(conn)
        conn.close()  # killed after reading the CDB

    fake = FakeHelper(dies)
    obj = new_helper(tree, fake.path)
    result = obj.execute(devnull, READ_KEYS)
    assert result.sense == SenseCode.LUN_COMM_FAILURE.to_bytes()
    assert not obj.is_connected()
    assert events.seen == [True, False]
    fake.close()
    with InProcessServer() as srv:
        srv_path = srv.path
        os.symlink(srv_path, fake.path)  # the same path serves again
        try:
            assert obj.execute(devnull, READ_KEYS).sense_code == SenseCode.IO_ERROR
            assert events.seen == [True, False, True]
        finally:
            os.unlink(fake.path)


@pytest.mark.parametrize(
    ("reply", "connections"),
    [
        (header(0, 256) + bytes(256), 2),  # more than the 255 bytes asked for
        (header(0x1234, 0), 2),  # not a status byte
        (header(0, 4)[:60], 2),  # hangs up mid-header
        (header(0x55, 0), 1),  # a byte, but no SAM status: the stream is still in step
    ],
)
def test_a_lying_helper_is_a_communication_failure(
    tree: ObjectTree, devnull: int, reply: bytes, connections: int
) -> None:
    fake = FakeHelper(answering(reply, header(0, 0)))
    obj = new_helper(tree, fake.path)
    assert obj.execute(devnull, READ_KEYS).sense == SenseCode.LUN_COMM_FAILURE.to_bytes()
    # A broken connection is gone; the next command uses a new one.
    assert obj.execute(devnull, READ_KEYS).status == 0
    assert fake.accepted == connections
    fake.close()


def test_junk_after_a_response_drops_the_connection_while_idle(
    tree: ObjectTree, events: Events, devnull: int
) -> None:
    fake = FakeHelper(answering(header(0x18, 0) + b"extra", header(0x18, 0)))
    obj = new_helper(tree, fake.path)
    assert obj.execute(devnull, READ_KEYS).status == 0x18  # answered before the junk is seen
    events.wait_for([True, False])  # the watcher sees the junk and drops the connection
    assert obj.execute(devnull, READ_KEYS).status == 0x18
    assert fake.accepted == 2
    events.wait_for([True, False, True])
    fake.close()


def test_data_on_pr_out_is_a_communication_failure(tree: ObjectTree, devnull: int) -> None:
    def handler(conn: socket.socket) -> None:
        handshake(conn)
        read_request(conn)
        conn.recv(24)
        conn.sendall(header(0, 1) + b"x")
        conn.recv(1)

    fake = FakeHelper(handler)
    obj = new_helper(tree, fake.path)
    result = obj.execute(devnull, REGISTER, bytes(24))
    assert result.sense_code == SenseCode.LUN_COMM_FAILURE
    fake.close()


def test_a_response_that_never_comes_times_out(tree: ObjectTree, devnull: int) -> None:
    fake = FakeHelper(answering())  # reads nothing, answers nothing
    obj = new_helper(tree, fake.path, command_timeout=0.3)
    t0 = time.monotonic()
    assert obj.execute(devnull, READ_KEYS).sense_code == SenseCode.LUN_COMM_FAILURE
    assert time.monotonic() - t0 < 3
    fake.close()


def test_five_connect_attempts_one_delay_apart(
    tree: ObjectTree, devnull: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with InProcessServer() as srv:
        obj = new_helper(tree, srv.path, reconnect_delay=0.1, watch_idle=False)
    # The helper is gone and its idle connection is dead.
    attempts: list[float] = []
    real_connect = HelperClient.connect

    def counting(path: str, *, timeout: float | None = None, **extension: Any) -> HelperClient:
        attempts.append(time.monotonic())
        return real_connect(path, timeout=timeout, **extension)

    monkeypatch.setattr(HelperClient, "connect", staticmethod(counting))
    t0 = time.monotonic()
    result = obj.execute(devnull, READ_KEYS)
    assert result.sense_code == SenseCode.LUN_COMM_FAILURE
    # One attempt found the dead pooled connection (write failed: retry at once); the
    # others tried to connect, each followed by the delay, five attempts in all.
    assert len(attempts) == 4
    assert time.monotonic() - t0 >= 0.4
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(attempts))


def test_an_idle_hangup_is_noticed_without_a_command(tree: ObjectTree, events: Events) -> None:
    srv = InProcessServer()
    with srv:
        obj = new_helper(tree, srv.path)
        assert obj.is_connected()
    # The server stopped and closed the idle connection; nobody sent a command.
    events.wait_for([True, False])
    assert not obj.is_connected()
    assert query_pr_managers(tree) == [{"id": "h", "connected": False}]


# == asyncio =====================================================================================
def test_asyncio_api(tree: ObjectTree, events: Events, devnull: int) -> None:
    with InProcessServer() as srv:
        obj = new_helper(tree, srv.path, pool_size=2)

        async def main() -> list[Any]:
            return await asyncio.gather(*(obj.execute_async(devnull, READ_KEYS) for _ in range(20)))

        results = asyncio.run(main())
        assert {r.sense_code for r in results} == {SenseCode.IO_ERROR}
        assert srv.server.statistics().requests == 20

        async def dies_idle() -> bool:
            await obj.execute_async(devnull, READ_KEYS)
            srv.server.stop()
            for _ in range(200):
                if not obj.is_connected():
                    return True
                await asyncio.sleep(0.01)
            return False

        assert asyncio.run(dies_idle())
    assert events.seen[:2] == [True, False]


def test_asyncio_failure_sense(tree: ObjectTree, devnull: int) -> None:
    fake = FakeHelper(answering(header(0, 4096)))
    obj = new_helper(tree, fake.path)

    async def main() -> Any:
        return await obj.execute_async(devnull, READ_KEYS)

    assert asyncio.run(main()).sense_code == SenseCode.LUN_COMM_FAILURE
    fake.close()


# == issue 16: unasked bytes and cancellation =====================================================
def long_handshake(reply: bytes) -> Callable[[socket.socket], None]:
    """A helper that announces its features with 8 bytes instead of 4, then answers every
    request with *reply*."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(bytes(8))
        conn.recv(4)
        while read_request(conn):
            conn.sendall(reply)

    return handler


# GOOD READ KEYS data: PRGENERATION 7, one key 0x0A.
KEYS_REPLY = (
    header(0, 16) + (7).to_bytes(4, "big") + (8).to_bytes(4, "big") + (10).to_bytes(8, "big")
)


def test_an_eight_byte_handshake_is_a_communication_failure_not_shifted_data(
    tree: ObjectTree, devnull: int
) -> None:
    fake = FakeHelper(long_handshake(KEYS_REPLY))
    obj = new_helper(tree, fake.path, watch_idle=False)
    try:
        # Read 4 bytes off, the answer would be GOOD with someone else's bytes.
        result = obj.execute(devnull, READ_KEYS)
        assert result.sense_code == SenseCode.LUN_COMM_FAILURE
        assert result.data == b""
        # complete()'s connection and four new ones, each dropped before its CDB went out.
        assert fake.accepted == PR_MAX_RECONNECT_ATTEMPTS
    finally:
        fake.close()


def test_an_eight_byte_handshake_fails_the_asyncio_client_too(
    tree: ObjectTree, devnull: int
) -> None:
    fake = FakeHelper(long_handshake(KEYS_REPLY))
    obj = new_helper(tree, fake.path, watch_idle=False)

    async def main() -> Any:
        return await obj.execute_async(devnull, READ_KEYS)

    try:
        result = asyncio.run(main())
        assert (result.sense_code, result.data) == (SenseCode.LUN_COMM_FAILURE, b"")
    finally:
        fake.close()


def test_a_cancelled_asyncio_command_gives_its_pool_slot_back(
    tree: ObjectTree, devnull: int
) -> None:
    connections = itertools.count()

    def handler(conn: socket.socket) -> None:
        if next(connections) == 1:  # the asyncio pool's first connection: silent
            conn.recv(1)
            return
        handshake(conn)
        while read_request(conn):
            conn.sendall(header(0x18, 0))

    fake = FakeHelper(handler)
    obj = new_helper(tree, fake.path, pool_size=1)

    async def main() -> Any:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):  # cancels it while it negotiates
                await obj.execute_async(devnull, READ_KEYS)
        # With the slot leaked the only one is taken, and this waits for ever.
        async with asyncio.timeout(5):
            return await obj.execute_async(devnull, READ_KEYS)

    try:
        assert asyncio.run(main()).status == 0x18
    finally:
        fake.close()
