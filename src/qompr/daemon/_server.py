# SPDX-License-Identifier: MIT
"""The serving core of ``qompr-pr-helper``: accept, negotiate, read, execute, answer.

General layout.  One asyncio loop owns the listening socket and every connection, and does
all their I/O: reads, parsing, replies.  A command runs

* *on the loop* when the backend says it cannot block (``cannot_block(request)``): the
  default SG_IO executor on an fd that is not a device (a pipe, a socket, /dev/null and its
  kin, a file on a local filesystem), where the ioctl fails at once, exactly as in
  qemu-pr-helper; a ``--backend`` manager that says so (``pr-manager-emulated`` in memory).
  There a thread hop would cost more than the whole command;
* *on a worker thread* otherwise (a block or SCSI device, where SG_IO may take seconds; a
  manager with a state file): at most :attr:`HelperServer.max_workers` at once, as
  qemu-pr-helper's thread pool stops at 64.

One thread doing every Python step of every connection keeps the interpreter lock out of the
way (many threads each serving a connection spend their time handing the lock around).

Reading follows :meth:`qompr.protocol.HelperConnection.next_read` exactly, so every byte
sequence meets the same fate as with qemu-pr-helper 7.2 (prh_co_entry / prh_read_request):
the same reads, the same replies, the same moment of closing.  Like qemu-pr-helper's
coroutine, a connection is not read while its command executes or its reply is unsent.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

import attrs

from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError
from qompr.linux import PeerCredentials
from qompr.linux import peer_credentials
from qompr.managers import ClientIdentity
from qompr.managers import PRManager
from qompr.protocol import DATA_SIZE
from qompr.protocol import NEED_DATA
from qompr.protocol import SENSE_SIZE
from qompr.protocol import ConnectionClosed
from qompr.protocol import Feature
from qompr.protocol import Handshake
from qompr.protocol import HelperConnection
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol import Negotiated
from qompr.protocol import Role
from qompr.protocol import State
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.transport.unix import recv_spec

__all__ = ["ConnectionStatistics", "HelperServer", "ServerStatistics"]

log = logging.getLogger("qompr.daemon")

#: How long a response may take to drain into a client that does not read.
SEND_TIMEOUT = 5.0


@attrs.frozen
class ConnectionStatistics:
    """One client connection.

    :param id: a serial number, in accept order.
    :param peer: its credentials (SO_PEERCRED), if known.
    :param opened: :func:`time.time` at accept.
    :param requests: commands answered.
    :param bytes_in: bytes read from it.
    :param bytes_out: bytes written to it.
    """

    id: int
    peer: PeerCredentials | None
    opened: float
    requests: int
    bytes_in: int
    bytes_out: int


@attrs.frozen
class ServerStatistics:
    """The whole server (trio-style ``statistics()`` value).

    :param connections_accepted: accepted connections, refused ones included.
    :param connections_refused: closed at once by ``--allow-uid/--allow-gid``.
    :param connections_open: open now.
    :param requests: commands answered.
    :param requests_in: PERSISTENT RESERVE IN commands answered.
    :param requests_out: PERSISTENT RESERVE OUT commands answered.
    :param check_conditions: answers with CHECK CONDITION status.
    :param protocol_errors: connections closed because the client broke the protocol.
    :param in_flight: commands executing now.
    :param max_in_flight: the most commands that ever executed at once.
    :param workers: worker threads alive.
    :param bytes_in: bytes read from clients.
    :param bytes_out: bytes written to clients.
    """

    connections_accepted: int
    connections_refused: int
    connections_open: int
    requests: int
    requests_in: int
    requests_out: int
    check_conditions: int
    protocol_errors: int
    in_flight: int
    max_in_flight: int
    workers: int
    bytes_in: int
    bytes_out: int


class _Client:
    """One accepted connection (owned by the loop thread)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "closed",
        "conn",
        "fd",
        "id",
        "nexus",
        "opened",
        "outgoing",
        "peer",
        "reading",
        "requests",
        "requests_in",
        "sock",
    )

    def __init__(self, cid: int, sock: socket.socket, peer: PeerCredentials | None) -> None:
        self.id = cid
        self.sock = sock
        self.fd = sock.fileno()
        self.conn = HelperConnection(Role.SERVER)
        self.peer = peer
        self.nexus: Nexus | None = None
        self.opened = time.time()
        self.requests = 0
        self.requests_in = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.outgoing = b""  # reply bytes the socket did not take yet
        self.reading = False  # registered with add_reader
        self.closed = False

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            self.id, self.peer, self.opened, self.requests, self.bytes_in, self.bytes_out
        )


class HelperServer:
    """Serve the qemu-pr-helper protocol on a listening unix socket.

    :param listener: a bound, listening unix stream socket.
    :param backend: the manager that executes the commands (``--backend``); qemu-pr-helper's
        SG_IO executor (:class:`~qompr.daemon.PRHelperSgIo`) if omitted.  The server asks it
        only what :class:`~qompr.managers.PRManager` declares.
    :param allow_uids: if this or *allow_gids* is non-empty, only peers whose SO_PEERCRED
        uid or gid is listed are served; others are closed before the handshake.
    :param allow_gids: see *allow_uids*.
    :param max_workers: the most commands executing at once on worker threads.
    :param on_event: called (on the loop) with ``"ready"`` and ``"stopping"``, for sd_notify.
    """

    def __init__(
        self,
        listener: socket.socket,
        *,
        backend: PRManager | None = None,
        allow_uids: Collection[int] = (),
        allow_gids: Collection[int] = (),
        max_workers: int = 64,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.listener = listener
        if backend is None:
            from qompr.daemon._backends import sgio_executor

            backend = sgio_executor()
        self.backend: PRManager = backend
        self.allow_uids = frozenset(allow_uids)
        self.allow_gids = frozenset(allow_gids)
        self.max_workers = max_workers
        self._on_event = on_event
        self._executor = ThreadPoolExecutor(
            max_workers, thread_name_prefix="qompr-pr-helper-worker"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stop_requested = False
        self._stop_event: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._open: dict[int, _Client] = {}  # id -> client
        self._busy = 0  # connections with a command executing or a reply unsent
        self._next_id = 0
        self._lock = threading.Lock()  # only for statistics() readers on other threads
        self._accepted = 0
        self._refused = 0
        self._closed_requests = 0
        self._closed_requests_in = 0
        self._closed_bytes_in = 0
        self._closed_bytes_out = 0
        self._check_conditions = 0
        self._protocol_errors = 0
        self._in_flight = 0
        self._max_in_flight = 0

    # == Section: public interface ===========================================================
    async def serve(self) -> None:
        """Serve until :meth:`stop`, then let in-flight commands finish and return."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._drained = asyncio.Event()
        self._stop_event = asyncio.Event()
        self.listener.setblocking(False)
        loop.add_reader(self.listener.fileno(), self._accept)
        if self._on_event is not None:
            self._on_event("ready")
        if self._stop_requested:
            self._begin_stop()
        try:
            await self._stop_event.wait()
            self._check_drained()
            await self._drained.wait()
        finally:
            self._executor.shutdown(wait=False)
            self._stopped.set()

    def stop(self) -> None:
        """Stop accepting and close idle connections; commands executing now still get their
        answer (qemu-pr-helper on SIGTERM/SIGINT/SIGHUP).  Thread-safe and idempotent."""
        self._stop_requested = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._begin_stop)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """From another thread: wait until :meth:`serve` has returned."""
        return self._stopped.wait(timeout)

    def statistics(self) -> ServerStatistics:
        """Counters for the whole server (open connections included)."""
        with self._lock:
            clients = list(self._open.values())
            closed = (
                self._closed_requests,
                self._closed_requests_in,
                self._closed_bytes_in,
                self._closed_bytes_out,
            )
        requests = closed[0] + sum(c.requests for c in clients)
        requests_in = closed[1] + sum(c.requests_in for c in clients)
        return ServerStatistics(
            connections_accepted=self._accepted,
            connections_refused=self._refused,
            connections_open=len(clients),
            requests=requests,
            requests_in=requests_in,
            requests_out=requests - requests_in,
            check_conditions=self._check_conditions,
            protocol_errors=self._protocol_errors,
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            workers=len(getattr(self._executor, "_threads", ())),
            bytes_in=closed[2] + sum(c.bytes_in for c in clients),
            bytes_out=closed[3] + sum(c.bytes_out for c in clients),
        )

    def connections(self) -> list[ConnectionStatistics]:
        """One entry per open connection, in accept order."""
        with self._lock:
            clients = sorted(self._open.values(), key=lambda c: c.id)
        return [c.statistics() for c in clients]

    # == Section: life cycle ===================================================================
    def _begin_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        loop = self._loop
        assert loop is not None
        if self._on_event is not None:
            self._on_event("stopping")
        with contextlib.suppress(ValueError, OSError):  # already closed
            loop.remove_reader(self.listener.fileno())
        self.listener.close()
        with self._lock:
            clients = list(self._open.values())
        for client in clients:
            if client.reading:  # idle: between commands, or mid-request (QEMU drops those)
                self._close(client, "service stopping")
        if self._stop_event is not None:
            self._stop_event.set()
        self._check_drained()

    def _check_drained(self) -> None:
        if self._drained is not None and self._stopping and self._busy == 0:
            self._drained.set()

    # == Section: accepting =====================================================================
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: log and keep listening (the loop retries).
                log.warning("accept failed: %s", exc)
                return
            self._accepted += 1
            self._new_client(sock)

    def _new_client(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            peer: PeerCredentials | None = peer_credentials(sock)
        except OSError:
            peer = None
        self._next_id += 1
        client = _Client(self._next_id, sock, peer)
        if (self.allow_uids or self.allow_gids) and not self._allowed(peer):
            self._refused += 1
            log.warning("connection %d refused: peer %s is not allowed", client.id, peer)
            sock.close()
            return
        if peer is not None:
            try:
                identity = ClientIdentity(peer.pid, peer.uid, peer.gid)
                client.nexus = self.backend.nexus_for_client(identity)
            except Exception:
                log.exception("connection %d: naming its I_T nexus failed", client.id)
                sock.close()
                return
        with self._lock:
            self._open[client.id] = client
        log.debug("connection %d accepted from %s", client.id, peer)
        # prh_co_entry: the helper speaks first, with the features it supports (none).
        self._send(client, client.conn.send(Handshake(Feature.NONE)))

    def _allowed(self, peer: PeerCredentials | None) -> bool:
        if peer is None:
            return False
        return peer.uid in self.allow_uids or peer.gid in self.allow_gids

    # == Section: reading and answering (loop thread) ===========================================
    def _resume(self, client: _Client) -> None:
        """Wait for the client's next bytes."""
        if client.closed or client.reading:
            return
        loop = self._loop
        assert loop is not None
        client.reading = True
        loop.add_reader(client.fd, self._readable, client)

    def _pause(self, client: _Client) -> None:
        if client.reading:
            client.reading = False
            loop = self._loop
            assert loop is not None
            loop.remove_reader(client.fd)

    def _readable(self, client: _Client) -> None:
        conn = client.conn
        try:
            data, fds = recv_spec(client.sock, conn.next_read())
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(client, f"read failed: {exc}")
            return
        client.bytes_in += len(data)
        conn.receive_data(data, fds)
        self._process(client)

    def _process(self, client: _Client) -> None:
        """Take the events the received bytes make, until more bytes are needed or a
        command is under way."""
        conn = client.conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self._protocol_errors += 1
                # qemu-pr-helper prints these only with -v.
                log.info("connection %d: %s", client.id, exc.message)
                self._close(client, exc.message)
                return
            if event is NEED_DATA:
                if conn.pending is None:
                    self._resume(client)
                return
            if isinstance(event, Negotiated):
                continue
            if isinstance(event, ConnectionClosed):
                self._close(client, "closed by the client")
                return
            assert isinstance(event, HelperRequest)
            if self.backend.cannot_block(event.fd):
                self._answer(client, event, self._execute(client, event))
                if client.closed or client.outgoing:
                    return
                if self._stopping:
                    self._close(client, "service stopping")
                    return
                continue  # pipelined bytes may already hold the next request
            self._offload(client, event)
            return

    def _offload(self, client: _Client, request: HelperRequest) -> None:
        """Run a command that may block on a worker thread."""
        loop = self._loop
        assert loop is not None
        self._pause(client)
        self._busy += 1
        future = loop.run_in_executor(self._executor, self._execute, client, request)

        def done(fut: asyncio.Future[HelperResponse]) -> None:
            self._busy -= 1
            try:
                response = fut.result()
            except BaseException:  # pragma: no cover - _execute catches backend errors
                log.exception("connection %d: internal error", client.id)
                self._close(client, "internal error")
                self._check_drained()
                return
            if not client.closed:
                self._answer(client, request, response)
                if not client.closed and not client.outgoing:
                    self._after_reply(client)
            self._check_drained()

        future.add_done_callback(done)

    def _answer(self, client: _Client, request: HelperRequest, response: HelperResponse) -> None:
        try:
            out = client.conn.send(response)
        except LocalProtocolError:  # pragma: no cover - _execute keeps the invariant
            log.exception("connection %d: bad response %r", client.id, response)
            self._close(client, "internal error")
            return
        client.requests += 1
        if request.opcode == Opcode.PERSISTENT_RESERVE_IN:
            client.requests_in += 1
        if response.status == ScsiStatus.CHECK_CONDITION:
            self._check_conditions += 1
        self._send(client, out)

    def _after_reply(self, client: _Client) -> None:
        """The reply is out: close if stopping, else go on with the next request."""
        if self._stopping:
            self._close(client, "service stopping")
            return
        self._process(client)

    def _send(self, client: _Client, data: bytes) -> None:
        """Write *data*; what the socket does not take now is written when it can."""
        data = client.outgoing + data
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._close(client, f"write failed: {exc}")
            return
        client.bytes_out += sent
        client.outgoing = data[sent:]
        if client.outgoing:
            loop = self._loop
            assert loop is not None
            self._pause(client)
            self._busy += 1
            loop.add_writer(client.fd, self._writable, client)
        elif client.conn.state is State.RECV_FEATURES:
            self._resume(client)  # the handshake is out: wait for the client's

    def _writable(self, client: _Client) -> None:
        loop = self._loop
        assert loop is not None
        loop.remove_writer(client.fd)
        self._busy -= 1
        data, client.outgoing = client.outgoing, b""
        self._send(client, data)
        if not client.closed and not client.outgoing:
            if client.conn.state is State.RECV_FEATURES:
                pass  # _send resumed reading
            else:
                self._after_reply(client)
        self._check_drained()

    # == Section: executing =====================================================================
    def _execute(self, client: _Client, request: HelperRequest) -> HelperResponse:
        """Run one command, close its fd, and shape the answer as prh_co_entry does."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._execute_fd(client, request)
        finally:
            os.close(request.fd)  # qemu-pr-helper closes its copy after every command
            with self._lock:
                self._in_flight -= 1

    def _execute_fd(self, client: _Client, request: HelperRequest) -> HelperResponse:
        opcode = request.opcode
        if opcode == Opcode.PERSISTENT_RESERVE_OUT:
            # do_pr_out refuses a read-only fd before looking at the device.
            try:
                mode = fcntl.fcntl(request.fd, fcntl.F_GETFL) & os.O_ACCMODE
            except OSError:  # pragma: no cover - the fd came from recvmsg
                mode = os.O_RDWR
            if mode == os.O_RDONLY:
                # qemu-pr-helper sends whatever was on its stack after these 18 bytes; we
                # send zeros (the documented fix).
                return _READ_ONLY_ANSWER
        try:
            result = self.backend.execute(request.fd, request.cdb, request.data, nexus=client.nexus)
        except Exception:
            log.exception("connection %d: backend failed on %s", client.id, request.cdb.hex())
            return _TARGET_FAILURE_ANSWER
        status = result.status
        if opcode == Opcode.PERSISTENT_RESERVE_IN and status == ScsiStatus.GOOD:
            # prh_co_entry: sz = MIN(bytes transferred, allocation length).
            data = result.data[: min(request.transfer_length, DATA_SIZE)]
        else:
            data = b""
        return HelperResponse(int(status), result.sense[:SENSE_SIZE], data)

    def _close(self, client: _Client, reason: str) -> None:
        if client.closed:
            return
        client.closed = True
        log.debug("connection %d closed: %s", client.id, reason)
        self._pause(client)
        if client.outgoing:
            loop = self._loop
            assert loop is not None
            loop.remove_writer(client.fd)
            client.outgoing = b""
            self._busy -= 1
        client.conn.close()
        with contextlib.suppress(OSError):
            client.sock.close()
        with self._lock:
            self._open.pop(client.id, None)
            self._closed_requests += client.requests
            self._closed_requests_in += client.requests_in
            self._closed_bytes_in += client.bytes_in
            self._closed_bytes_out += client.bytes_out
        self._check_drained()


_READ_ONLY_ANSWER = HelperResponse(ScsiStatus.CHECK_CONDITION, SenseCode.INVALID_OPCODE.to_bytes())
_TARGET_FAILURE_ANSWER = HelperResponse(
    ScsiStatus.CHECK_CONDITION, SenseCode.TARGET_FAILURE.to_bytes()
)
