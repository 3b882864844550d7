# SPDX-License-Identifier: MIT
"""``pr-manager-helper``: hands PR commands to a qemu-pr-helper over its unix socket.

Wire behaviour is QEMU's client (scsi/pr-manager-helper.c; docs/reference/qemu-pr-helper.md §12):

* ``complete()`` connects and negotiates, so creation fails with QEMU's message when the
  helper cannot be reached;
* one command at a time per connection, the fd passed with the CDB (SCM_RIGHTS);
* while the CDB is being sent, up to 5 attempts: a failed connect waits 1 s, a failed write
  reconnects at once; once the CDB is out, any failure answers CHECK CONDITION with LOGICAL
  UNIT COMMUNICATION FAILURE (ABORTED COMMAND 08h/00h) and the connection is dropped;
* ``PR_MANAGER_STATUS_CHANGED`` goes out through the ``qompr_pr_manager_status_changed``
  hook when the manager connects and when it loses the helper.

Better than QEMU:

* timeouts (:attr:`PRManagerHelper.connect_timeout`, :attr:`~PRManagerHelper.command_timeout`);
  QEMU waits forever for a helper that accepts but never speaks;
* a helper that lies (a size larger than asked, data after a PR OUT, a status that is not a
  byte, bytes nobody asked for) is a communication failure here, where QEMU asserts;
* a connection the helper drops while idle is noticed at once by a watcher thread, so
  ``is_connected()`` and the event do not wait for the next command;
* many threads share a small pool of connections (:attr:`~PRManagerHelper.pool_size`)
  instead of one lock, and :meth:`~PRManagerHelper.execute_async` is native asyncio.

The tunables are Python attributes, not QOM properties: QEMU's type has only ``path``.

Beyond QEMU's protocol, with ``qompr-pr-helper`` only: :meth:`PRManagerHelper.use_extension`
asks every connection for qompr's extension (:mod:`qompr.protocol.extension`), to name the
initiator and target port the helper's backend sees (a trusted uid only) and to send TEST
UNIT READY.  Against ``qemu-pr-helper``, which has no extension, the connection then fails
with a message saying so; without the call nothing changes.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import weakref
from typing import TYPE_CHECKING

from qompr._compat import override
from qompr._lazy import loaded_logger
from qompr.errors import ConnectError
from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError
from qompr.errors import StateError
from qompr.managers._base import TEST_UNIT_READY_CDB
from qompr.managers._base import PRManager
from qompr.protocol import DATA_SIZE
from qompr.protocol import SENSE_SIZE
from qompr.protocol import Feature
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol import Identify
from qompr.protocol.retry import PR_MAX_RECONNECT_ATTEMPTS
from qompr.protocol.retry import Sent
from qompr.protocol.retry import run_plan
from qompr.protocol.retry import run_plan_async
from qompr.qom import StringProperty
from qompr.scsi import Opcode
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import sense_length
from qompr.scsi import transfer_length
from qompr.transport.sync import HelperClient
from qompr.transport.sync import RequestNotSentError

if TYPE_CHECKING:
    import asyncio
    import logging

    from qompr.managers._helper_aio import AsyncPool
    from qompr.scsi import Nexus

__all__ = ["PR_MAX_RECONNECT_ATTEMPTS", "PRManagerHelper"]

#: The parent of every manager's logger.  logging itself loads with the first record that can
#: be shown: a qompr persist --helper that succeeds has none.
_LOGGER = "qompr.manager"


def _comm_failure() -> ScsiResult:
    return ScsiResult.check(SenseCode.LUN_COMM_FAILURE)


def _prepare(fd: int, cdb: bytes, data: bytes) -> HelperRequest | ScsiResult:
    """QEMU's checks before talking to the helper: a request, or the answer without one.

    :raises LocalProtocolError: what QEMU asserts on or refuses as a caller error.
    """
    cdb = bytes(cdb)
    if not 1 <= len(cdb) <= 16:
        raise LocalProtocolError(f"CDB must be 1 to 16 bytes, not {len(cdb)}")
    if cdb[0] not in (Opcode.PERSISTENT_RESERVE_IN, Opcode.PERSISTENT_RESERVE_OUT):
        raise LocalProtocolError(f"opcode {cdb[0]:#04x} is not PERSISTENT RESERVE IN/OUT")
    length = transfer_length(cdb)
    if length > DATA_SIZE:
        # QEMU returns -EINVAL without asking the helper; the guest sees INVALID FIELD.
        return ScsiResult.check(SenseCode.INVALID_FIELD)
    if cdb[0] == Opcode.PERSISTENT_RESERVE_IN:
        if data:
            raise LocalProtocolError("PERSISTENT RESERVE IN takes no parameter list")
        return HelperRequest(cdb, fd)
    if len(data) < length:
        raise LocalProtocolError(
            f"parameter list is {len(data)} bytes, the CDB (bytes 7-8) says {length}"
        )
    return HelperRequest(cdb, fd, bytes(data[:length]))  # QEMU sends len bytes; the rest is resid


class PRManagerHelper(PRManager, qom_type="pr-manager-helper"):
    """Client of a ``qemu-pr-helper`` (or ``qompr-pr-helper``) socket."""

    path = StringProperty(
        mandatory=True,
        description=None,
    )

    #: Seconds for one connect plus handshake (QEMU: forever).
    connect_timeout: float = 5.0
    #: Seconds for the rest of a command once the CDB is out (QEMU: forever).  A real
    #: helper may spend 7 s or more in SG_IO, or much longer on multipath failover.
    command_timeout: float | None = 120.0
    #: Most connections kept to the helper; threads beyond it wait for one.
    pool_size: int = 4
    #: QEMU's reconnect policy while sending the CDB (:mod:`qompr.protocol.retry`).
    max_reconnect_attempts: int = PR_MAX_RECONNECT_ATTEMPTS
    reconnect_delay: float = 1.0
    #: Watch idle connections so a helper that goes away is noticed at once.
    watch_idle: bool = True

    @override
    def instance_init(self) -> None:
        self._features = Feature.NONE
        self._identify: Identify | None = None
        self._connected = False
        self._status_lock = threading.Lock()
        self._pool = _ThreadPool(self)
        self._async_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncPool] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False

    def instance_finalize(self) -> None:
        self._closed = True
        self._pool.close()
        for pool in list(self._async_pools.values()):
            pool.close()

    @property
    def log(self) -> logging.Logger:
        """``qompr.manager.<id>`` (qemu.qmp's per-object child loggers)."""
        import logging

        return logging.getLogger(_LOGGER).getChild(self.id or "anonymous")

    # == Section: life cycle =================================================================
    def use_extension(
        self,
        *,
        initiator: str | None = None,
        target_port: int | None = None,
        test_unit_ready: bool = False,
    ) -> None:
        """Ask the helper for qompr's protocol extension on every connection (before
        ``complete()``; ``qompr-pr-helper`` only).

        :param initiator: the initiator name the helper's backend gives this client's
            commands (the helper grants it to root and ``--allow-naming-uid`` uids only).
        :param target_port: the RELATIVE TARGET PORT IDENTIFIER, with *initiator* only.
        :param test_unit_ready: make :meth:`test_unit_ready` go through the helper.
        :raises LocalProtocolError: a name or port the extension cannot carry, or a port
            without a name.
        :raises StateError: the manager is already connected.
        """
        if self._pool.total:
            raise StateError(
                f"pr-manager-helper '{self.id}' is already connected",
                state="completed",
                required="created",
            )
        features = Feature.NONE
        identify = None
        if initiator is not None:
            identify = Identify(initiator, target_port)
            features |= Feature.QOMPR_NAMING
        elif target_port is not None:
            raise LocalProtocolError("a target port is named together with an initiator")
        if test_unit_ready:
            features |= Feature.QOMPR_TEST_UNIT_READY
        self._features, self._identify = features, identify

    @property
    def extension(self) -> Feature:
        """The bits of qompr's extension every connection asks for (:meth:`use_extension`)."""
        return self._features

    @override
    def complete(self) -> None:
        """Connect and negotiate now, as QEMU's ``pr_manager_helper_complete``.

        :raises ConnectError: QEMU's texts (``Failed to connect to '%s': %s``, ``UNIX socket
            path '%s' is too long``, ``Unexpected end-of-file before all data were read``).
        """
        self._pool.adopt(self._connect())

    @override
    def is_connected(self) -> bool:
        """Whether the helper was reachable at last contact (``query-pr-managers``)."""
        return self._connected

    def _set_connected(self, connected: bool) -> None:
        with self._status_lock:
            changed = self._connected != connected
            self._connected = connected
        if changed and not self._closed:
            if loaded_logger(_LOGGER) is not None:  # else nothing can show an info line
                self.log.info("%s helper at %s", "connected to" if connected else "lost", self.path)
            self.status_changed(connected)

    def _connect(self) -> HelperClient:
        client = HelperClient.connect(
            self.path,
            timeout=self.connect_timeout,
            features=self._features,
            identify=self._identify,
        )
        client.sock.settimeout(self.command_timeout)
        self._set_connected(True)
        return client

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(
                f"pr-manager-helper '{self.id}' was deleted",
                state="finalized",
                required="completed",
            )

    # == Section: commands ===================================================================
    @override
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """Send one command to the helper (QEMU's ``pr_manager_helper_run``).

        *nexus* is ignored: the helper's device knows its own initiator.

        :raises LocalProtocolError: a CDB that is not PR IN/OUT, or a parameter list shorter
            than CDB bytes 7-8 say (QEMU asserts or refuses these).
        """
        prepared = _prepare(fd, cdb, data)
        if isinstance(prepared, ScsiResult):
            return prepared
        response = run_plan(self._pool, prepared, self.max_reconnect_attempts)
        return self._result(response)

    @override
    async def run_async(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """:meth:`run` for asyncio: the same policy, awaiting instead of blocking."""
        prepared = _prepare(fd, cdb, data)
        if isinstance(prepared, ScsiResult):
            return prepared
        import asyncio

        from qompr.managers._helper_aio import AsyncPool  # asyncio only for asyncio callers

        loop = asyncio.get_running_loop()
        pool = self._async_pools.get(loop)
        if pool is None:
            pool = self._async_pools[loop] = AsyncPool(self)
        response = await run_plan_async(pool, prepared, self.max_reconnect_attempts)
        return self._result(response)

    @override
    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        """TEST UNIT READY through the helper, after ``use_extension(test_unit_ready=True)``;
        else the default answer (INVALID COMMAND OPERATION CODE), as QEMU's protocol carries
        only PERSISTENT RESERVE IN/OUT.  *nexus* is ignored, as for :meth:`run`."""
        if not self._features & Feature.QOMPR_TEST_UNIT_READY:
            return super().test_unit_ready(fd, nexus=nexus)
        request = HelperRequest(TEST_UNIT_READY_CDB, fd)
        return self._result(run_plan(self._pool, request, self.max_reconnect_attempts))

    def _result(self, response: HelperResponse | None) -> ScsiResult:
        if response is None:  # the connection failed: QEMU's answer
            return _comm_failure()
        try:
            status = ScsiStatus(response.status)
        except ValueError:
            self.log.warning("the helper answered status %#04x", response.status)
            return _comm_failure()
        if status == ScsiStatus.CHECK_CONDITION:
            sense = response.sense[: sense_length(response.sense[:SENSE_SIZE])]
            return ScsiResult(status, sense, response.data)
        return ScsiResult(status, b"", response.data)

    def _send_failed(self, request: HelperRequest, exc: Exception) -> Sent:
        if isinstance(exc, RequestNotSentError):
            self.log.debug("sending the CDB failed: %s", exc)
            return Sent.NONE
        # The CDB is out: no retry (QEMU: "retrying the command will invoke initialize
        # again", i.e. the next command reconnects).
        self.log.warning("command %s failed: %s", request.cdb[:10].hex(), exc)
        return Sent.PART

    def _read_failed(self, request: HelperRequest, exc: Exception) -> None:
        self.log.warning("command %s failed: %s", request.cdb[:10].hex(), exc)


class _ThreadPool:
    """The connections threads share (a :class:`~qompr.protocol.retry.Connections`): at most
    ``pool_size``, idle ones watched by one :class:`_IdleWatcher` thread."""

    def __init__(self, manager: PRManagerHelper) -> None:
        self.manager = manager
        self.lock = threading.Condition()
        self.idle: list[HelperClient] = []
        self.total = 0
        self.watcher: _IdleWatcher | None = None

    def adopt(self, client: HelperClient) -> None:
        """Take a connection opened outside a command (``complete()``) into the pool."""
        with self.lock:
            self.total += 1
        self.checkin(client)

    # -- the steps of a command (qompr.protocol.retry.Step) ----------------------------------
    def checkout(self) -> HelperClient | None:
        with self.lock:
            while True:
                self.manager._check_open()
                if self.idle:
                    client = self.idle.pop()
                    if self.watcher is not None:
                        self.watcher.unwatch(client)
                    return client
                if self.total < max(1, self.manager.pool_size):
                    self.total += 1
                    return None
                self.lock.wait()

    def connect(self) -> HelperClient | None:
        try:
            return self.manager._connect()
        except ConnectError as exc:
            self.manager.log.debug("reconnect failed: %s", exc)
            return None

    def pause(self) -> None:
        time.sleep(self.manager.reconnect_delay)

    def send(self, client: HelperClient, request: HelperRequest) -> Sent:
        try:
            client.send_request(request)
        except OSError as exc:
            return self.manager._send_failed(request, exc)
        return Sent.ALL

    def read(self, client: HelperClient, request: HelperRequest) -> HelperResponse | None:
        try:
            response = client.read_response()
        except (RemoteProtocolError, OSError) as exc:
            self.manager._read_failed(request, exc)
            return None
        self.manager._set_connected(True)
        return response

    def checkin(self, client: HelperClient) -> None:
        with self.lock:
            if self.manager._closed:
                self.total -= 1
                client.close()
                return
            self.idle.append(client)
            if self.manager.watch_idle:
                if self.watcher is None:
                    self.watcher = _IdleWatcher(self)
                self.watcher.watch(client)
            self.lock.notify()

    def discard(self, client: HelperClient | None, *, lost: bool) -> None:
        if client is not None:
            client.close()
        with self.lock:
            self.total -= 1
            self.lock.notify()
        if lost:
            self.manager._set_connected(False)

    # -- idle connections ----------------------------------------------------------------------
    def idle_readable(self, client: HelperClient) -> None:
        """Called by the watcher: *client* became readable while idle."""
        with self.lock:
            if client not in self.idle:
                return  # checked out meanwhile; the command will find out
            watcher = self.watcher
            if not client.hung_up():
                if watcher is not None:
                    watcher.watch(client)  # re-arm (one-shot)
                return
            self.idle.remove(client)
            if watcher is not None:
                watcher.unwatch(client)
        self.manager.log.info("the helper closed an idle connection")
        self.discard(client, lost=True)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        with self.lock:
            idle, self.idle = self.idle, []
            self.total -= len(idle)
            self.lock.notify_all()
        for client in idle:
            client.close()


class _IdleWatcher:
    """One thread per manager that sees idle connections hang up (epoll, level-triggered)."""

    def __init__(self, pool: _ThreadPool) -> None:
        self.pool = weakref.ref(pool)
        self.epoll = select.epoll()
        self.clients: dict[int, HelperClient] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.epoll.register(self._wake_r, select.EPOLLIN)
        self._stopping = False
        self.thread = threading.Thread(
            target=self._run, name=f"qompr-helper-watch-{pool.manager.id}", daemon=True
        )
        self.thread.start()

    def watch(self, client: HelperClient) -> None:
        fd = client.fileno()
        if fd < 0:
            return
        self.clients[fd] = client
        try:
            self.epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT)
        except FileExistsError:
            self.epoll.modify(fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT)

    def unwatch(self, client: HelperClient) -> None:
        fd = client.fileno()
        if self.clients.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    ready = self.epoll.poll(1.0)
                except InterruptedError:  # pragma: no cover
                    continue
                pool = self.pool()
                if pool is None:
                    return  # the manager was garbage-collected without being finalized
                for fd, _mask in ready:
                    client = self.clients.get(fd)
                    if fd != self._wake_r and client is not None:
                        pool.idle_readable(client)
                del pool
        finally:
            self.epoll.close()
            _close_quietly(self._wake_r)
            _close_quietly(self._wake_w)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
