# SPDX-License-Identifier: MIT
"""The serving core in-process: answers, fd handling, backends, concurrency, stopping."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from typing import TypeVar

import pytest

import qompr
from qompr.daemon import _server
from qompr.managers import ClientIdentity
from qompr.managers import DelegatingPRManager
from qompr.managers import PRManager
from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.testing import InProcessServer
from qompr.testing import connected
from qompr.testing import is_closed
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import recv_exact
from qompr.testing import request

IO_ERROR = SenseCode.IO_ERROR.to_bytes().ljust(96, b"\0")
INVALID_OPCODE = SenseCode.INVALID_OPCODE.to_bytes().ljust(96, b"\0")


class FakeManager(PRManager, qom_type="test-fake-manager"):
    """A pr-manager that records calls and answers what it is told."""

    def instance_init(self) -> None:
        self.result = ScsiResult.good()
        self.delay = 0.0
        self.calls: list[tuple[bytes, bytes, Nexus | None]] = []
        self.started = threading.Event()

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        os.fstat(fd)  # the fd is still open while the command runs
        self.calls.append((cdb, data, nexus))
        self.started.set()
        time.sleep(self.delay)
        return self.result


_M = TypeVar("_M", bound=FakeManager)


def make(cls: type[_M], result: ScsiResult | None = None, delay: float = 0.0) -> _M:
    """A completed manager of the test type *cls*, in a tree of its own."""
    tree = qompr.new_tree(load_entrypoints=False)
    tree.types.register(FakeManager)
    if cls is not FakeManager:
        tree.types.register(cls)
    manager = tree.object_add(cls.__qom_info__.name, "fake")
    assert isinstance(manager, cls)
    manager.result = result or ScsiResult.good()
    manager.delay = delay
    return manager


def test_sgio_on_dev_null_answers_io_error_and_readonly_out_invalid_opcode() -> None:
    with InProcessServer() as srv, connected(srv.path) as sock:
        rw = os.open("/dev/null", os.O_RDWR)
        ro = os.open("/dev/null", os.O_RDONLY)
        try:
            assert request(sock, pr_in(), rw) == (2, IO_ERROR, b"")
            assert request(sock, pr_out(24), ro, bytes(24)) == (2, INVALID_OPCODE, b"")
            assert request(sock, pr_out(24), rw, bytes(24)) == (2, IO_ERROR, b"")
        finally:
            os.close(rw)
            os.close(ro)
        stats = srv.server.statistics()
    assert (stats.requests, stats.requests_in, stats.requests_out) == (3, 1, 2)
    assert stats.check_conditions == 3


def test_the_daemon_closes_its_copy_of_each_fd() -> None:
    with InProcessServer() as srv, connected(srv.path) as sock:
        r, w = os.pipe()
        try:
            request(sock, pr_in(), w)
            os.close(w)
            os.set_blocking(r, False)
            assert os.read(r, 1) == b""  # every write end is closed: the daemon's too
        finally:
            os.close(r)


def test_protocol_errors_close_only_that_connection() -> None:
    with InProcessServer() as srv, connected(srv.path) as bad, connected(srv.path) as good:
        bad.sendall(pr_in())  # no fd
        assert is_closed(bad)
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            assert request(good, pr_in(), fd)[0] == 2
        finally:
            os.close(fd)
        assert srv.server.statistics().protocol_errors == 1


def test_manager_backend_results_are_shaped_like_qemu_pr_helpers() -> None:
    manager = make(FakeManager, ScsiResult.good(bytes(range(100))))
    with InProcessServer(backend=manager) as srv, connected(srv.path) as sock:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            # The answer is cut to the allocation length.
            assert request(sock, pr_in(10), fd) == (0, bytes(96), bytes(range(10)))
            manager.result = ScsiResult.check(SenseCode.INVALID_FIELD)
            status, sense, data = request(sock, pr_in(10), fd)
            assert (status, sense[:18], data) == (2, SenseCode.INVALID_FIELD.to_bytes(), b"")
            manager.result = ScsiResult.conflict()
            assert request(sock, pr_out(24), fd, b"p" * 24) == (0x18, bytes(96), b"")
        finally:
            os.close(fd)
    assert manager.calls[-1][:2] == (pr_out(24), b"p" * 24)


def test_backend_exceptions_answer_target_failure() -> None:
    class Broken(FakeManager, qom_type="test-broken-manager"):
        def run(
            self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
        ) -> ScsiResult:
            raise RuntimeError("boom")

    with InProcessServer(backend=make(Broken)) as srv, connected(srv.path) as sock:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            status, sense, _ = request(sock, pr_in(), fd)
            assert (status, sense[:18]) == (2, SenseCode.TARGET_FAILURE.to_bytes())
            assert request(sock, pr_in(), fd)[0] == 2  # still serving
        finally:
            os.close(fd)


def test_nexus_for_client_is_asked_once_per_connection() -> None:
    asked: list[ClientIdentity] = []

    class ByCredentials(FakeManager, qom_type="test-naming-manager"):
        def nexus_for_client(self, client: ClientIdentity) -> Nexus:
            asked.append(client)
            return Nexus(f"pid{client.pid}", 2)

    manager = make(ByCredentials)
    with InProcessServer(backend=manager) as srv, connected(srv.path) as sock:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            request(sock, pr_in(), fd)
            request(sock, pr_in(), fd)
        finally:
            os.close(fd)
    # One call for this connection (the harness's readiness probe made another).
    assert ClientIdentity(os.getpid(), os.getuid(), os.getgid()) in asked
    assert len(asked) == 2
    assert manager.calls[0][2] == Nexus(f"pid{os.getpid()}", 2)
    assert manager.calls[0][2] == manager.calls[1][2]


def test_allow_lists_refuse_other_peers_before_the_handshake() -> None:
    me = os.getuid()
    with InProcessServer(allow_uids={me + 1}, allow_gids={os.getgid() + 1}) as srv:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(srv.path)
        assert is_closed(sock)
        sock.close()
        assert srv.server.statistics().connections_refused >= 1
    with InProcessServer(allow_uids={me}) as srv, connected(srv.path):
        pass
    with InProcessServer(allow_gids={os.getgid()}) as srv, connected(srv.path):
        pass


def test_a_slow_command_does_not_hold_up_other_clients() -> None:
    slow = make(FakeManager, delay=1.0)
    server = InProcessServer(backend=slow)
    with server as srv, connected(srv.path) as a, connected(srv.path) as b:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            socket.send_fds(a, [pr_in()], [fd])
            assert slow.started.wait(5)
            slow.delay = 0.0
            t0 = time.monotonic()
            assert request(b, pr_in(), fd)[0] == 0
            assert time.monotonic() - t0 < 0.5
            assert len(recv_exact(a, 104)) == 104
        finally:
            os.close(fd)


def test_stop_lets_the_command_in_flight_answer_then_closes() -> None:
    slow = make(FakeManager, delay=0.5)
    srv = InProcessServer(backend=slow)
    with srv, connected(srv.path) as busy, connected(srv.path) as idle:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            socket.send_fds(busy, [pr_in()], [fd])
            assert slow.started.wait(5)
            srv.server.stop()
            assert is_closed(idle)  # idle connections go at once
            assert len(recv_exact(busy, 104)) == 104  # the command in flight is answered
            assert is_closed(busy)
            assert srv.server.wait_stopped(5)
        finally:
            os.close(fd)
        assert not os.path.exists(srv.path) or _refused(srv.path)


def _refused(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(path)
        except ConnectionRefusedError:
            return True
    return False


def test_max_workers_bounds_commands_in_flight() -> None:
    slow = make(FakeManager, delay=0.3)
    with InProcessServer(backend=slow, max_workers=2) as srv:
        socks = [socket.socket(socket.AF_UNIX) for _ in range(4)]
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            for sock in socks:
                sock.settimeout(10)
                sock.connect(srv.path)
                recv_exact(sock, 4)
                sock.sendall(bytes(4))
                socket.send_fds(sock, [pr_in()], [fd])
            for sock in socks:
                assert len(recv_exact(sock, 104)) == 104
        finally:
            os.close(fd)
            for sock in socks:
                sock.close()
        stats = srv.server.statistics()
    assert stats.max_in_flight == 2
    assert stats.workers <= 2


def test_idle_connections_cost_no_worker_threads() -> None:
    with InProcessServer() as srv:
        socks = []
        try:
            for _ in range(300):
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(srv.path)
                socks.append(sock)
            for sock in socks:
                sock.settimeout(5)
                assert recv_exact(sock, 4) == bytes(4)
                sock.sendall(bytes(4))
            fd = os.open("/dev/null", os.O_RDWR)
            try:
                for sock in socks[::50]:
                    assert request(sock, pr_in(), fd)[0] == 2
            finally:
                os.close(fd)
            time.sleep(0.1)
            stats = srv.server.statistics()
            assert stats.connections_open >= 300
            assert stats.workers <= 8
            assert len(srv.server.connections()) == stats.connections_open
        finally:
            for sock in socks:
                sock.close()


def test_requests_reach_the_backend_intact() -> None:
    manager = make(FakeManager, ScsiResult.good(b"abc"))
    with InProcessServer(backend=manager) as srv, connected(srv.path) as sock:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            assert request(sock, pr_in(3, action=1), fd) == (0, bytes(96), b"abc")
            assert request(sock, pr_out(30, action=6, type_=0x15), fd, bytes(range(30)))[0] == 0
        finally:
            os.close(fd)
    assert [(cdb, data) for cdb, data, _ in manager.calls] == [
        (pr_in(3, action=1), b""),
        (pr_out(30, action=6, type_=0x15), bytes(range(30))),
    ]


class _Recorder(FakeManager, qom_type="test-recorder-manager"):
    """A manager that records the thread each command runs in."""

    def instance_init(self) -> None:
        self.promise = False
        self.threads: list[str] = []

    def cannot_block(self, fd: int, cdb: bytes | None = None) -> bool:
        return self.promise

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        self.threads.append(threading.current_thread().name)
        return ScsiResult.good(b"\0" * 8)


@pytest.mark.parametrize("cannot_block", [True, False])
def test_a_manager_that_cannot_block_runs_on_the_loop(cannot_block: bool) -> None:
    manager = make(_Recorder)
    manager.promise = cannot_block
    with InProcessServer(backend=manager) as srv, connected(srv.path) as sock:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            for _ in range(3):
                assert request(sock, pr_in(), fd)[0] == 0
        finally:
            os.close(fd)
    loop_thread = [name.startswith("qompr-pr-helper-worker") for name in manager.threads]
    assert loop_thread == [not cannot_block] * 3


def test_emulated_in_memory_cannot_block_with_a_state_file_it_can(
    tree: ObjectTree, tmp_path: Path
) -> None:
    memory = tree.object_add("pr-manager-emulated", "emu0")
    stored = tree.object_add("pr-manager-emulated", "emu1", state=str(tmp_path / "pr.db"))
    assert isinstance(memory, PRManagerEmulated) and isinstance(stored, PRManagerEmulated)
    with open(tmp_path / "lu", "wb") as lu:
        fd = lu.fileno()
        assert memory.cannot_block(fd) and not stored.cannot_block(fd)
        memory.abort_handler = lambda nexuses: None  # an embedder's handler may block
        assert not memory.cannot_block(fd)


class _ThreadRecorder(DelegatingPRManager, qom_type="test-thread-recorder"):
    """Passes everything to its target and records the thread each command runs in."""

    def instance_init(self) -> None:
        super().instance_init()
        self.threads: list[str] = []

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        self.threads.append(threading.current_thread().name)
        return super().run(fd, cdb, data, nexus=nexus)


def test_a_state_file_answers_pr_in_on_the_loop_and_pr_out_on_a_worker(
    tree: ObjectTree, tmp_path: Path
) -> None:
    # cannot_block(fd, cdb): an SQLite state file reads without a write transaction, so PR IN
    # runs on the loop; PR OUT waits for fsync, so it goes to a worker thread.  A wrapper
    # (DelegatingPRManager) passes the CDB through and records the threads.
    tree.types.register(_ThreadRecorder)
    stored = tree.object_add("pr-manager-emulated", "emu1", state=str(tmp_path / "pr.db"))
    assert isinstance(stored, PRManagerEmulated)
    read_keys, register = pr_in(), pr_out(24)
    with open(tmp_path / "lu", "wb") as lu:
        assert stored.cannot_block(lu.fileno(), read_keys)
        assert not stored.cannot_block(lu.fileno(), register)
        assert not stored.cannot_block(lu.fileno())
    wrapper = tree.object_add("test-thread-recorder", "rec", target="emu1")
    assert isinstance(wrapper, _ThreadRecorder)
    key = (7).to_bytes(8, "big")
    with InProcessServer(backend=wrapper) as srv, connected(srv.path) as sock:
        fd = os.open(tmp_path / "lu", os.O_RDWR)
        try:
            assert request(sock, register + bytes(8) + key + bytes(8), fd)[0] == 0
            status, _, data = request(sock, read_keys, fd)
        finally:
            os.close(fd)
    assert status == 0 and data[8:16] == key
    on_worker = [name.startswith("qompr-pr-helper-worker") for name in wrapper.threads]
    assert on_worker == [True, False]


class _Batcher(FakeManager, qom_type="test-batcher"):
    """Runs on the loop, records which commands ran inside which ``batch()``; the commands
    whose marker is in :attr:`holds` wait there until the test releases them."""

    def instance_init(self) -> None:
        super().instance_init()
        self.batches: list[list[int]] = []
        self.outside: list[int] = []
        self.inside = False
        self.holds = {1: threading.Event()}
        self.arrived = {1: threading.Event()}
        self.broken = False

    def hold(self, marker: int) -> None:
        self.holds[marker] = threading.Event()
        self.arrived[marker] = threading.Event()

    def cannot_block(self, fd: int, cdb: bytes | None = None) -> bool:
        return True

    @contextlib.contextmanager
    def _together(self) -> Iterator[None]:
        self.batches.append([])
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    def batch(self) -> contextlib.AbstractContextManager[None]:
        if self.broken:
            raise RuntimeError("no batch today")
        return self._together()

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        marker = cdb[8]  # the allocation length tells the commands apart
        (self.batches[-1] if self.inside else self.outside).append(marker)
        if marker in self.holds:
            self.arrived[marker].set()
            self.holds[marker].wait(10)
        return ScsiResult.good()


def _answered(sock: socket.socket) -> bool:
    return struct.unpack(">i", recv_exact(sock, 104)[:4]) == (0,)


class _Bed(NamedTuple):
    """A server on a :class:`_Batcher`, five connections, and the fd every command carries."""

    manager: _Batcher
    srv: InProcessServer
    socks: list[socket.socket]
    fd: int

    def send(self, *markers: int) -> None:
        """Send command *marker* (its allocation length) on connection *marker* - 1."""
        for marker in markers:
            socket.send_fds(self.socks[marker - 1], [pr_in(marker)], [self.fd])

    def first_holds_while(self, *markers: int) -> None:
        """Command 1 holds the loop (alone in its turn) while *markers* arrive, then goes."""
        self.send(1)
        assert self.manager.arrived[1].wait(5)
        self.send(*markers)
        self.manager.holds[1].set()


@pytest.fixture
def bed(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Bed]:
    monkeypatch.setattr(_server, "LOOP_BUDGET", 60.0)  # commands may hold the loop
    manager = make(_Batcher)
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        with contextlib.ExitStack() as stack:
            srv = stack.enter_context(InProcessServer(backend=manager))
            socks = [stack.enter_context(connected(srv.path)) for _ in range(5)]
            yield _Bed(manager, srv, socks, fd)
    finally:
        os.close(fd)


def test_commands_received_in_one_turn_run_inside_one_batch(bed: _Bed) -> None:
    # While the first command (alone in its turn: no batch) holds the loop, three more
    # arrive; the next turn reads all three and runs them inside one batch(), in the order
    # the loop read them.
    bed.first_holds_while(2, 3, 4)
    assert all(_answered(sock) for sock in bed.socks[:4])
    assert bed.manager.outside == [1]
    assert len(bed.manager.batches) == 1 and sorted(bed.manager.batches[0]) == [2, 3, 4]


def test_a_batch_that_fails_to_begin_still_answers_every_command(bed: _Bed) -> None:
    bed.manager.broken = True
    bed.first_holds_while(2, 3)
    assert all(_answered(sock) for sock in bed.socks[:3])
    assert bed.manager.batches == [] and sorted(bed.manager.outside) == [1, 2, 3]


def test_a_command_queued_for_the_loop_when_stop_comes_is_still_answered(bed: _Bed) -> None:
    # A stop handed to the loop runs at the end of the turn, before the queued commands of
    # that turn, so it must find them counted as executing, not idle: their clients get the
    # answers, then the close.  Set-up: 1 holds the loop alone while 2 and 3 arrive; they run
    # as a batch, where 2 holds the loop while 4 and 5 arrive and the stop is asked for.
    bed.manager.hold(2)
    bed.first_holds_while(2, 3)
    assert bed.manager.arrived[2].wait(5)
    assert _answered(bed.socks[0])
    bed.send(4, 5)
    bed.srv.server.stop()
    bed.manager.holds[2].set()
    for sock in bed.socks[1:]:
        assert _answered(sock)
        assert is_closed(sock)
    assert bed.manager.outside == [1]
    assert sorted(map(sorted, bed.manager.batches)) == [[2, 3], [4, 5]]
