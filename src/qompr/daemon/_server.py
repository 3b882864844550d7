# SPDX-License-Identifier: MIT
"""The serving core of ``qompr-pr-helper``: accept, negotiate, read, execute, answer.

General layout.  One event loop (:class:`~qompr.daemon._loop.Loop`) owns the listening socket
and every connection, and does all their I/O: reads, parsing, replies.  A command runs

* *on the loop* when the executor says it cannot block (``cannot_block(fd, cdb)`` of the
  manager contract): the default SG_IO executor on an fd that is not a device (a pipe, a
  socket, /dev/null and its kin, a file on a local filesystem), where the ioctl fails at once,
  exactly as in qemu-pr-helper; a ``--backend`` manager that says so (``pr-manager-emulated``
  in memory, and its PR IN from a state file).  There a thread hop would cost more than the
  whole command;
* *on a worker thread* otherwise (a block or SCSI device, where SG_IO may take seconds; a
  PR OUT to a state file, which fsyncs): at most :attr:`HelperServer.max_workers` at once, as
  qemu-pr-helper's thread pool stops at 64.

The commands that run on the loop wait until the turn has read every ready connection, then
run one after the other inside the manager's ``batch()``: they had all arrived by then, so a
manager may serve their reads from one look at shared state (an SQLite state file's
``data_version``) and each still sees every command acknowledged before it was sent.  A
command alone in its turn (the loop's ``ready_left`` says no other connection is ready) runs
at once: with one busy connection nothing is shared and the queue would only add latency.

One thread doing every Python step of every connection keeps the interpreter lock out of the
way (many threads each serving a connection spend their time handing the lock around).

Reading follows :meth:`qompr.protocol.HelperConnection.next_read` exactly, so every byte
sequence meets the same fate as with qemu-pr-helper 7.2 (prh_co_entry / prh_read_request):
the same reads, the same replies, the same moment of closing.  Like qemu-pr-helper's
coroutine, a connection is not read while its command executes or its reply is unsent.

Bounds, because every client byte is hostile and the daemon runs as root:

* a connection that begins a message (its handshake is due, or part of a request came) or
  leaves its reply unread for longer than ``stall_timeout`` is closed; one that is idle
  between commands may stay for ever (QEMU keeps its connection for the VM's life);
* at most ``max_connections`` are open; more are closed as soon as they are accepted;
* out of file descriptors, accepting pauses (up to a second, doubling) instead of spinning,
  and the log says so once per episode;
* one command per connection per turn of the loop (reads never take more than one request),
  and a command that was to run on the loop but took longer than :data:`LOOP_BUDGET` sends
  the next ones to worker threads for :data:`LOOP_COOLDOWN`;
* once stopping, a reply the client does not read within :data:`SEND_TIMEOUT` is dropped:
  SIGTERM ends the daemon even with such a client.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Collection
from time import perf_counter
from typing import TYPE_CHECKING
from typing import Any

from qompr.daemon._identity import extension_reply
from qompr.daemon._loop import Loop
from qompr.daemon._loop import Timer
from qompr.daemon._options import DEFAULT_MAX_CONNECTIONS
from qompr.daemon._options import DEFAULT_STALL_TIMEOUT
from qompr.daemon._stats import ConnectionStatistics
from qompr.daemon._stats import ServerStatistics
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
from qompr.protocol import Identify
from qompr.protocol import Negotiated
from qompr.protocol import Role
from qompr.protocol import State
from qompr.scsi import Opcode
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.transport.unix import ANCILLARY_SIZE
from qompr.transport.unix import fds_from_ancillary

if TYPE_CHECKING:
    from qompr.daemon._tracking import PRTracker
    from qompr.scsi import Nexus

__all__ = [
    "LOOP_BUDGET",
    "LOOP_COOLDOWN",
    "SEND_TIMEOUT",
    "ConnectionStatistics",
    "HelperServer",
    "ServerStatistics",
]

log = logging.getLogger("qompr.daemon")

#: Once stopping, how long a reply may wait for a client that does not read it.
SEND_TIMEOUT = 1.0
#: Longest a command may run on the event loop before the next ones go to worker threads.
LOOP_BUDGET = 0.02
#: How long they then go to worker threads.
LOOP_COOLDOWN = 1.0
#: Most connections taken from the backlog in one turn of the loop.
_ACCEPT_BATCH = 64
#: errnos of accept(2) that mean "no resources now": pause accepting, then try again.
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: How often the same warning may reach the log.
_WARN_INTERVAL = 10.0


class _Client:
    """One accepted connection (owned by the loop thread)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "closed",
        "conn",
        "executing",
        "fd",
        "id",
        "nexus",
        "opened",
        "outgoing",
        "peer",
        "reading",
        "requests",
        "requests_in",
        "since",
        "sock",
    )

    def __init__(self, cid: int, sock: socket.socket, peer: PeerCredentials | None) -> None:
        self.id = cid
        self.sock = sock
        self.fd = sock.fileno()
        self.conn = HelperConnection(Role.SERVER, extensions=True)
        self.peer = peer
        self.nexus: Nexus | None = None
        self.opened = time.time()
        self.requests = 0
        self.requests_in = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.outgoing = b""  # reply bytes the socket did not take yet
        self.reading = False  # registered with add_reader
        self.executing = False  # a command is queued for the loop or runs on a worker thread
        self.closed = False
        self.since: float | None = None  # when it began to owe us bytes or stopped reading

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            self.id, self.peer, self.opened, self.requests, self.bytes_in, self.bytes_out
        )


class _Workers:
    """Threads for the commands that may block, started as needed, at most *limit*.

    Daemon threads: one stuck in the kernel (SG_IO on a wedged device) must not keep the
    process from exiting once the server has stopped.
    """

    def __init__(self, limit: int, done: Callable[..., object]) -> None:
        self.limit = limit
        self._done = done  # called (thread-safe) with (callback, result, error)
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[..., object]] | None]
        self._jobs = queue.SimpleQueue()
        self._idle = 0
        self._count = 0
        self._lock = threading.Lock()

    @property
    def alive(self) -> int:
        return self._count

    def submit(self, job: Callable[[], Any], callback: Callable[..., object]) -> None:
        with self._lock:
            start = self._idle <= 0 and self._count < self.limit
            if start:
                self._count += 1
            else:
                self._idle -= 1
        self._jobs.put((job, callback))
        if start:
            name = f"qompr-pr-helper-worker-{self._count}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, callback = item
            try:
                result, error = job(), None
            except BaseException as exc:  # handed to the loop, which logs it
                result, error = None, exc
            self._done(callback, result, error)
            del item, job, callback, result, error
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        with self._lock:
            count, self._count = self._count, 0
        for _ in range(count):
            self._jobs.put(None)


class HelperServer:
    """Serve the qemu-pr-helper protocol on a listening unix socket.

    :param listener: a bound, listening unix stream socket.
    :param backend: the manager that executes the commands (``--backend``); qemu-pr-helper's
        SG_IO executor (:class:`~qompr.daemon.PRHelperSgIo`) if omitted.  The server asks it
        only what :class:`~qompr.managers.PRManager` declares.
    :param allow_uids: if this or *allow_gids* is non-empty, only peers whose SO_PEERCRED
        uid or gid is listed are served; others are closed before the handshake.
    :param allow_gids: see *allow_uids*.
    :param allow_naming_uids: besides root, the uids whose clients may name their initiator
        (``--allow-naming-uid``; :mod:`qompr.daemon._identity`).
    :param max_workers: the most commands executing at once on worker threads.
    :param max_connections: the most connections open at once (``--max-connections``).
    :param stall_timeout: seconds a connection may owe bytes (its handshake, the rest of a
        request) or leave its reply unread before it is closed (``--stall-timeout``).
    :param on_event: called (on the loop) with ``"ready"`` and ``"stopping"``, for sd_notify.
    :param tracker: tracks what each client VM holds, from its PR OUT commands
        (:mod:`qompr.daemon._tracking`, live migration); none if omitted.
    """

    def __init__(
        self,
        listener: socket.socket,
        *,
        backend: PRManager | None = None,
        allow_uids: Collection[int] = (),
        allow_gids: Collection[int] = (),
        allow_naming_uids: Collection[int] = (),
        max_workers: int = 64,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        on_event: Callable[[str], None] | None = None,
        tracker: PRTracker | None = None,
    ) -> None:
        self.listener = listener
        if backend is None:
            from qompr.daemon._backends import sgio_executor

            backend = sgio_executor()
        self.backend: PRManager = backend
        self.allow_uids = frozenset(allow_uids)
        self.allow_gids = frozenset(allow_gids)
        self.allow_naming_uids = frozenset(allow_naming_uids)
        self.max_workers = max_workers
        self.max_connections = max_connections
        self.stall_timeout = stall_timeout
        self._on_event = on_event
        self.tracker = tracker
        #: The event loop; add signal handlers to it before :meth:`serve_forever`.
        self.loop = Loop()
        self._workers = _Workers(max_workers, self.loop.call_soon_threadsafe)
        self._stopping = False
        self._stop_requested = False
        self._drain_expired = False
        self._stopped = threading.Event()
        self._open: dict[int, _Client] = {}  # id -> client
        self._watched: dict[int, _Client] = {}  # clients with a stall clock running
        self._sweep: Timer | None = None
        self._busy = 0  # connections with a command queued or executing, or a reply unsent
        self._batch: list[tuple[_Client, HelperRequest]] = []  # on-loop commands of this turn
        self._next_id = 0
        self._lock = threading.Lock()  # only for statistics() readers on other threads
        self._accept_pause = 0.0
        self._loop_slow_until = 0.0
        self._warned: dict[str, float] = {}
        self._counts = dict.fromkeys(
            (
                "accepted",
                "refused",
                "over_limit",
                "stalled",
                "accept_errors",
                "moved_off_loop",
                "check_conditions",
                "protocol_errors",
                "closed_requests",
                "closed_requests_in",
                "closed_bytes_in",
                "closed_bytes_out",
            ),
            0,
        )
        self._in_flight = 0
        self._max_in_flight = 0

    # == Section: public interface ===========================================================
    def serve_forever(self) -> None:
        """Serve until :meth:`stop`, let in-flight commands finish, and return."""
        loop = self.loop
        try:
            self.listener.setblocking(False)
            loop.add_reader(self.listener.fileno(), self._accept)
            if self._on_event is not None:
                self._on_event("ready")
            if self._stop_requested:
                self._begin_stop()
            loop.run()
        finally:
            self._workers.shutdown()
            loop.close()
            self._stopped.set()

    async def serve(self) -> None:
        """:meth:`serve_forever` for asyncio programs (on a thread of its own)."""
        import asyncio

        await asyncio.to_thread(self.serve_forever)

    def stop(self) -> None:
        """Stop accepting and close idle connections; commands executing now still get their
        answer (qemu-pr-helper on SIGTERM/SIGINT/SIGHUP).  Thread-safe and idempotent."""
        self._stop_requested = True
        with contextlib.suppress(OSError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self._begin_stop)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """From another thread: wait until :meth:`serve_forever` has returned."""
        return self._stopped.wait(timeout)

    def statistics(self) -> ServerStatistics:
        """Counters for the whole server (open connections included)."""
        with self._lock:
            clients = list(self._open.values())
            counts = dict(self._counts)
        requests = counts["closed_requests"] + sum(c.requests for c in clients)
        requests_in = counts["closed_requests_in"] + sum(c.requests_in for c in clients)
        return ServerStatistics(
            connections_accepted=counts["accepted"],
            connections_refused=counts["refused"],
            connections_open=len(clients),
            requests=requests,
            requests_in=requests_in,
            requests_out=requests - requests_in,
            check_conditions=counts["check_conditions"],
            protocol_errors=counts["protocol_errors"],
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            workers=self._workers.alive,
            bytes_in=counts["closed_bytes_in"] + sum(c.bytes_in for c in clients),
            bytes_out=counts["closed_bytes_out"] + sum(c.bytes_out for c in clients),
            connections_over_limit=counts["over_limit"],
            connections_stalled=counts["stalled"],
            accept_errors=counts["accept_errors"],
            commands_moved_off_loop=counts["moved_off_loop"],
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
        if self._on_event is not None:
            self._on_event("stopping")
        self.loop.remove_reader(self.listener.fileno())
        self.listener.close()
        with self._lock:
            clients = list(self._open.values())
        for client in clients:
            if not client.executing and not client.outgoing:  # idle, or mid-request
                self._close(client, "service stopping")
        self.loop.call_later(SEND_TIMEOUT, self._expire_drain)
        self._check_drained()

    def _expire_drain(self) -> None:
        """Stopping: replies still unread are dropped (commands executing still finish)."""
        self._drain_expired = True
        with self._lock:
            clients = list(self._open.values())
        for client in clients:
            if client.outgoing:
                self._close(client, "stopping, and the client does not read its reply")

    def _check_drained(self) -> None:
        if self._stopping and self._busy == 0:
            self.loop.stop()

    def _warn(self, key: str, message: str, *args: object) -> None:
        """Log a warning, at most once per :data:`_WARN_INTERVAL` for the same *key*."""
        now = self.loop.time()
        if now - self._warned.get(key, -_WARN_INTERVAL) >= _WARN_INTERVAL:
            self._warned[key] = now
            log.warning(message, *args)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # == Section: accepting ====================================================================
    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._count("accept_errors")
                if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                    self._pause_accepting(exc)
                    return
                log.debug("accept failed: %s", exc)  # the peer gave up meanwhile
                continue
            self._accept_pause = 0.0
            self._count("accepted")
            self._new_client(sock)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of file descriptors (or memory): the connection stays in the backlog, so the
        listener stays readable; retrying at once would spin.  Pause, doubling up to 1 s."""
        self._accept_pause = min(max(self._accept_pause * 2, 0.05), 1.0)
        self._warn(
            "accept",
            "accept failed: %s; accepting again in %.2f s (%d open connections)",
            exc.strerror or exc,
            self._accept_pause,
            len(self._open),
        )
        fd = self.listener.fileno()
        self.loop.remove_reader(fd)
        self.loop.call_later(self._accept_pause, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if not self._stopping:
            self.loop.add_reader(self.listener.fileno(), self._accept)

    def _new_client(self, sock: socket.socket) -> None:
        if len(self._open) >= self.max_connections:
            self._count("over_limit")
            self._warn(
                "limit",
                "%d connections open (--max-connections): closing new ones",
                len(self._open),
            )
            sock.close()
            return
        sock.setblocking(False)
        try:
            peer: PeerCredentials | None = peer_credentials(sock)
        except OSError:
            peer = None
        self._next_id += 1
        client = _Client(self._next_id, sock, peer)
        if (self.allow_uids or self.allow_gids) and not self._allowed(peer):
            self._count("refused")
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

    # == Section: reading and answering (loop thread) ========================================
    def _resume(self, client: _Client) -> None:
        """Wait for the client's next bytes."""
        if client.closed or client.reading:
            return
        client.reading = True
        self.loop.add_reader(client.fd, self._readable, client)

    def _pause(self, client: _Client) -> None:
        if client.reading:
            client.reading = False
            self.loop.remove_reader(client.fd)

    def _readable(self, client: _Client) -> None:
        conn = client.conn
        spec = conn.next_read()
        try:
            if spec.fds:  # recv_spec(), spelt out on the request path
                data, ancillary, _flags, _addr = client.sock.recvmsg(
                    spec.size, ANCILLARY_SIZE, socket.MSG_CMSG_CLOEXEC
                )
                fds = fds_from_ancillary(ancillary) if ancillary else _NO_FDS
            else:
                data, fds = client.sock.recv(spec.size), _NO_FDS
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
        command is under way.  Reads are exactly as long as the protocol core asks, so the
        buffer never holds a second request: one command per connection per turn."""
        conn = client.conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self._count("protocol_errors")
                # qemu-pr-helper prints these only with -v.
                log.info("connection %d: %s", client.id, exc.message)
                self._close(client, exc.message)
                return
            if event is NEED_DATA:
                if conn.pending is None:
                    self._resume(client)
                self._watch(client)
                return
            if type(event) is not HelperRequest:  # the rare events first, by name
                if isinstance(event, Negotiated | Identify):  # qompr's extension: _identity
                    out, client.nexus = extension_reply(self, client, event)
                    if out:
                        self._send(client, out)
                        if client.closed or client.outgoing:
                            return
                    continue
                assert isinstance(event, ConnectionClosed)
                self._close(client, "closed by the client")
                return
            if not self._on_loop(event.fd, event.cdb):
                self._offload(client, event)
                return
            if self._batch or self.loop.ready_left:  # others came this turn: run together
                self._defer(client, event)
                return
            # Alone in its turn (one connection busy): nothing to share, so no queue.
            self._answer(client, event, self._execute_here(client, event))
            if client.closed or client.outgoing:
                return
            if self._stopping:
                self._close(client, "service stopping")
                return

    def _on_loop(self, fd: int, cdb: bytes) -> bool:
        if self._loop_slow_until and self.loop.time() < self._loop_slow_until:
            return False
        try:
            return self.backend.cannot_block(fd, cdb)
        except Exception:
            log.exception("cannot_block() failed: running the command on a worker thread")
            return False

    def _defer(self, client: _Client, request: HelperRequest) -> None:
        """Queue a command that runs on the loop: the commands received in one turn run
        together once every one of them is in (:meth:`_run_batch`)."""
        self._unwatch(client)
        client.executing = True  # not closed by a stop meanwhile: it is answered
        self._busy += 1
        batch = self._batch
        batch.append((client, request))
        if len(batch) == 1:
            self.loop.call_soon(self._run_batch)

    def _run_batch(self) -> None:
        """Run the commands the loop received in this turn, in the order they came, inside
        the backend's :meth:`~qompr.managers.PRManager.batch` (each had arrived before it
        began, so a manager may serve their reads from one look at shared state: an SQLite
        state file is checked once instead of once per PR IN); then send the replies one
        after the other, so that a client process with several connections is woken once
        for all of its replies rather than once for each."""
        batch, self._batch = self._batch, []
        together = _ALONE
        if len(batch) > 1:  # one command alone shares nothing: its own look is the same
            try:
                together = self.backend.batch()
                together.__enter__()
            except Exception:
                log.exception("batch() failed: running the commands one by one")
                together = _ALONE
        done: list[tuple[_Client, HelperRequest, HelperResponse]] = []
        try:
            for client, request in batch:
                if self._loop_slow_until and self.loop.time() < self._loop_slow_until:
                    client.executing = False
                    self._busy -= 1
                    self._offload(client, request)  # an earlier one was slow: off the loop
                    continue
                try:
                    done.append((client, request, self._execute_here(client, request)))
                except Exception:  # pragma: no cover - _execute answers a backend's failures
                    log.exception("connection %d: internal error", client.id)
                    client.executing = False
                    self._busy -= 1
                    self._close(client, "internal error")  # the others are still answered
        finally:
            try:
                together.__exit__(None, None, None)
            except Exception:  # the answers still go out
                log.exception("batch() failed to end")
        for client, request, response in done:
            client.executing = False
            self._busy -= 1
            if not client.closed:
                self._answer(client, request, response)
                if not client.closed and not client.outgoing:
                    self._after_reply(client)
        self._check_drained()

    def _execute_here(self, client: _Client, request: HelperRequest) -> HelperResponse:
        """Run a command that cannot block on the loop, and watch that it did not."""
        start = perf_counter()
        response = self._execute(client, request)
        took = perf_counter() - start
        if took > LOOP_BUDGET:
            self._loop_slow_until = self.loop.time() + LOOP_COOLDOWN
            self._count("moved_off_loop")
            self._warn(
                "slow",
                "a command took %.1f ms on the event loop: running commands on worker "
                "threads for %g s",
                took * 1000,
                LOOP_COOLDOWN,
            )
        return response

    def _offload(self, client: _Client, request: HelperRequest) -> None:
        """Run a command that may block on a worker thread."""
        self._pause(client)
        self._unwatch(client)
        client.executing = True
        self._busy += 1
        self._workers.submit(
            lambda: self._execute(client, request),
            lambda response, error: self._executed(client, request, response, error),
        )

    def _executed(
        self,
        client: _Client,
        request: HelperRequest,
        response: HelperResponse | None,
        error: BaseException | None,
    ) -> None:
        """Back on the loop with a worker's answer."""
        client.executing = False
        self._busy -= 1
        if error is not None or response is None:  # pragma: no cover - _execute catches
            log.error("connection %d: internal error", client.id, exc_info=error)
            self._close(client, "internal error")
        elif not client.closed:
            self._answer(client, request, response)
            if not client.closed and not client.outgoing:
                self._after_reply(client)
        self._check_drained()

    def _answer(self, client: _Client, request: HelperRequest, response: HelperResponse) -> None:
        try:
            out = client.conn.send(response)
        except LocalProtocolError:  # pragma: no cover - _execute keeps the invariant
            log.exception("connection %d: bad response %r", client.id, response)
            self._close(client, "internal error")
            return
        client.requests += 1
        if request.cdb[0] == _PR_IN:
            client.requests_in += 1
        if response.status == _CHECK_CONDITION:
            self._counts["check_conditions"] += 1
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
            if self._drain_expired:
                self._close(client, "stopping, and the client does not read its reply")
                return
            self._pause(client)
            self._busy += 1
            self.loop.add_writer(client.fd, self._writable, client)
            self._watch(client)
        elif client.conn.state is State.RECV_FEATURES:
            self._resume(client)  # the handshake is out: wait for the client's
            self._watch(client)

    def _writable(self, client: _Client) -> None:
        self.loop.remove_writer(client.fd)
        self._busy -= 1
        data, client.outgoing = client.outgoing, b""
        self._send(client, data)
        if not client.closed and not client.outgoing:
            self._unwatch(client)  # the reply is out: its clock stops
            if client.conn.state is State.RECV_FEATURES:  # _send resumed reading
                self._watch(client)  # the client's handshake is due
            else:
                self._after_reply(client)
        self._check_drained()

    # == Section: stalls =======================================================================
    def _watch(self, client: _Client) -> None:
        """Start (or stop) the stall clock as the connection owes bytes or not."""
        if client.outgoing or client.conn.waiting_for_peer:
            if client.since is None:
                client.since = self.loop.time()
                self._watched[client.id] = client
                if self._sweep is None:
                    self._sweep = self.loop.call_later(self.stall_timeout, self._sweep_stalls)
        else:
            self._unwatch(client)

    def _unwatch(self, client: _Client) -> None:
        if client.since is not None:
            client.since = None
            self._watched.pop(client.id, None)

    def _sweep_stalls(self) -> None:
        self._sweep = None
        now = self.loop.time()
        earliest: float | None = None
        for client in list(self._watched.values()):
            since = client.since
            if since is None:  # pragma: no cover - unwatched clients leave the dict
                continue
            if now - since >= self.stall_timeout:
                self._count("stalled")
                what = "reply unread" if client.outgoing else "message unfinished"
                log.info("connection %d: %s for %.0f s", client.id, what, now - since)
                self._close(client, f"stalled ({what})")
            elif earliest is None or since < earliest:
                earliest = since
        if earliest is not None:
            delay = max(0.01, earliest + self.stall_timeout - now)
            self._sweep = self.loop.call_later(delay, self._sweep_stalls)

    # == Section: executing ====================================================================
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
        opcode = request.cdb[0]
        if opcode == _PR_OUT:
            # do_pr_out refuses a read-only fd before looking at the device.
            try:
                mode = fcntl.fcntl(request.fd, fcntl.F_GETFL) & os.O_ACCMODE
            except OSError:  # pragma: no cover - the fd came from recvmsg
                mode = os.O_RDWR
            if mode == os.O_RDONLY:
                # qemu-pr-helper sends whatever was on its stack after these 18 bytes; we
                # send zeros (the documented fix).
                return _READ_ONLY_ANSWER
        nexus = client.nexus
        try:
            if not opcode:  # TEST UNIT READY: qompr's extension (the core checked the grant)
                result = self.backend.test_unit_ready(request.fd, nexus=nexus)
            elif opcode == _PR_OUT and self.tracker is not None:
                result = self.tracker.execute(
                    self.backend, request.fd, request.cdb, request.data,
                    nexus=nexus, peer=client.peer, connection=client.id,
                )  # fmt: skip
            else:
                result = self.backend.execute(request.fd, request.cdb, request.data, nexus=nexus)
        except Exception:
            log.exception("connection %d: backend failed on %s", client.id, request.cdb.hex())
            return _TARGET_FAILURE_ANSWER
        status = result.status
        if status == 0 and opcode == _PR_IN:
            # prh_co_entry: sz = MIN(bytes transferred, allocation length), the allocation
            # length being CDB bytes 7-8 (scsi_cdb_xfer).
            cdb = request.cdb
            data = result.data[: min((cdb[7] << 8) | cdb[8], DATA_SIZE)]
        else:
            data = b""
        return HelperResponse(int(status), result.sense[:SENSE_SIZE], data)

    def _close(self, client: _Client, reason: str) -> None:
        if client.closed:
            return
        client.closed = True
        log.debug("connection %d closed: %s", client.id, reason)
        self._pause(client)
        self._unwatch(client)
        if client.outgoing:
            self.loop.remove_writer(client.fd)
            client.outgoing = b""
            self._busy -= 1
        client.conn.close()
        with contextlib.suppress(OSError):
            client.sock.close()
        with self._lock:
            self._open.pop(client.id, None)
            counts = self._counts
            counts["closed_requests"] += client.requests
            counts["closed_requests_in"] += client.requests_in
            counts["closed_bytes_in"] += client.bytes_in
            counts["closed_bytes_out"] += client.bytes_out
        self._check_drained()


_PR_IN = int(Opcode.PERSISTENT_RESERVE_IN)
_PR_OUT = int(Opcode.PERSISTENT_RESERVE_OUT)
_CHECK_CONDITION = int(ScsiStatus.CHECK_CONDITION)
_NO_FDS: list[int] = []  # never appended to: the core copies what it is given
#: The context of a batch of one (nothing to share); nullcontext is reusable.
_ALONE: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
_READ_ONLY_ANSWER = HelperResponse(ScsiStatus.CHECK_CONDITION, SenseCode.INVALID_OPCODE.to_bytes())
_TARGET_FAILURE_ANSWER = HelperResponse(
    ScsiStatus.CHECK_CONDITION, SenseCode.TARGET_FAILURE.to_bytes()
)
