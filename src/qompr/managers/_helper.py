# SPDX-License-Identifier: MIT
"""``pr-manager-helper``: hands PR commands to a qemu-pr-helper over its unix socket.

Wire behaviour is QEMU's client (scsi/pr-manager-helper.c; qemu-pr-facts.md §1.12):

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import time
import weakref
from typing import TYPE_CHECKING
from typing import Final

from qompr.errors import ConnectError
from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError
from qompr.errors import StateError
from qompr.managers._base import PRManager
from qompr.protocol import DATA_SIZE
from qompr.protocol import SENSE_SIZE
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.qom import StringProperty
from qompr.scsi import Opcode
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import sense_length
from qompr.scsi import transfer_length
from qompr.transport.aio import AsyncHelperClient
from qompr.transport.sync import HelperClient
from qompr.transport.sync import RequestNotSentError
from qompr.transport.sync import connect_unix
from qompr.transport.unix import UNIX_PATH_MAX

if TYPE_CHECKING:
    from qompr.scsi import Nexus

__all__ = ["PR_MAX_RECONNECT_ATTEMPTS", "UNIX_PATH_MAX", "PRManagerHelper", "connect_unix"]

#: QEMU's ``PR_MAX_RECONNECT_ATTEMPTS``.
PR_MAX_RECONNECT_ATTEMPTS: Final = 5

_log = logging.getLogger("qompr.manager")


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
    #: QEMU's reconnect policy while sending the CDB.
    max_reconnect_attempts: int = PR_MAX_RECONNECT_ATTEMPTS
    reconnect_delay: float = 1.0
    #: Watch idle connections so a helper that goes away is noticed at once.
    watch_idle: bool = True

    def instance_init(self) -> None:
        self._pool_lock = threading.Condition()
        self._idle: list[HelperClient] = []
        self._total = 0
        self._connected = False
        self._status_lock = threading.Lock()
        self._watcher: _IdleWatcher | None = None
        self._async_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncPool] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False

    def instance_finalize(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        with self._pool_lock:
            idle, self._idle = self._idle, []
            self._total -= len(idle)
            self._pool_lock.notify_all()
        for client in idle:
            client.close()
        for pool in list(self._async_pools.values()):
            pool.close()

    @property
    def log(self) -> logging.Logger:
        """``qompr.manager.<id>`` (qemu.qmp's per-object child loggers)."""
        return _log.getChild(self.id or "anonymous")

    # == Section: life cycle =================================================================
    def complete(self) -> None:
        """Connect and negotiate now, as QEMU's ``pr_manager_helper_complete``.

        :raises ConnectError: QEMU's texts (``Failed to connect to '%s': %s``, ``UNIX socket
            path '%s' is too long``, ``Unexpected end-of-file before all data were read``).
        """
        client = self._connect()
        with self._pool_lock:
            self._total += 1
        self._checkin(client)

    def is_connected(self) -> bool:
        """Whether the helper was reachable at last contact (``query-pr-managers``)."""
        return self._connected

    def _set_connected(self, connected: bool) -> None:
        with self._status_lock:
            changed = self._connected != connected
            self._connected = connected
        if changed and not self._closed:
            self.log.info("%s helper at %s", "connected to" if connected else "lost", self.path)
            self.status_changed(connected)

    def _connect(self) -> HelperClient:
        client = HelperClient.connect(self.path, timeout=self.connect_timeout)
        client.sock.settimeout(self.command_timeout)
        self._set_connected(True)
        return client

    # == Section: the pool ===================================================================
    def _checkout(self) -> HelperClient | None:
        """An idle connection, or None when the caller may open a new one."""
        with self._pool_lock:
            while True:
                if self._closed:
                    raise StateError(
                        f"pr-manager-helper '{self.id}' was deleted",
                        state="finalized",
                        required="completed",
                    )
                if self._idle:
                    client = self._idle.pop()
                    if self._watcher is not None:
                        self._watcher.unwatch(client)
                    return client
                if self._total < max(1, self.pool_size):
                    self._total += 1
                    return None
                self._pool_lock.wait()

    def _checkin(self, client: HelperClient) -> None:
        with self._pool_lock:
            if self._closed:
                self._total -= 1
                client.close()
                return
            self._idle.append(client)
            if self.watch_idle:
                if self._watcher is None:
                    self._watcher = _IdleWatcher(self)
                self._watcher.watch(client)
            self._pool_lock.notify()

    def _discard(self, client: HelperClient | None, *, lost: bool = True) -> None:
        """Forget a slot (and its broken connection); *lost* announces the disconnect."""
        if client is not None:
            client.close()
        with self._pool_lock:
            self._total -= 1
            self._pool_lock.notify()
        if lost:
            self._set_connected(False)

    def _idle_hung_up(self, client: HelperClient) -> None:
        """Called by the watcher: *client* became readable while idle."""
        with self._pool_lock:
            if client not in self._idle:
                return  # checked out meanwhile; the command will find out
            watcher = self._watcher
            if not client.hung_up():
                if watcher is not None:
                    watcher.watch(client)  # re-arm (one-shot)
                return
            self._idle.remove(client)
            if watcher is not None:
                watcher.unwatch(client)
        self.log.info("the helper closed an idle connection")
        self._discard(client)

    # == Section: commands ===================================================================
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
        request = prepared
        client: HelperClient | None = None
        for _attempt in range(max(1, self.max_reconnect_attempts)):
            client = self._checkout()
            if client is None:
                try:
                    client = self._connect()
                except ConnectError as exc:
                    self.log.debug("reconnect failed: %s", exc)
                    self._discard(None, lost=False)
                    client = None
                    time.sleep(self.reconnect_delay)
                    continue
            try:
                client.send_request(request)
                break
            except RequestNotSentError as exc:
                self.log.debug("sending the CDB failed: %s", exc)
                self._discard(client)
                client = None
            except LocalProtocolError:
                self._checkin(client)
                raise
        if client is None:
            return _comm_failure()
        try:
            response = client.read_response()
        except (RemoteProtocolError, OSError) as exc:
            # The CDB is out: no retry (QEMU: "retrying the command will invoke initialize
            # again", i.e. the next command reconnects).
            self.log.warning("command %s failed: %s", request.cdb[:10].hex(), exc)
            self._discard(client)
            return _comm_failure()
        self._checkin(client)
        self._set_connected(True)
        return self._result(response)

    def _result(self, response: HelperResponse) -> ScsiResult:
        try:
            status = ScsiStatus(response.status)
        except ValueError:
            self.log.warning("the helper answered status %#04x", response.status)
            return _comm_failure()
        if status == ScsiStatus.CHECK_CONDITION:
            sense = response.sense[: sense_length(response.sense[:SENSE_SIZE])]
            return ScsiResult(status, sense, response.data)
        return ScsiResult(status, b"", response.data)

    # == Section: asyncio ====================================================================
    async def run_async(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        """:meth:`run` for asyncio: the same policy, awaiting instead of blocking."""
        prepared = _prepare(fd, cdb, data)
        if isinstance(prepared, ScsiResult):
            return prepared
        request = prepared
        loop = asyncio.get_running_loop()
        pool = self._async_pools.get(loop)
        if pool is None:
            pool = self._async_pools[loop] = _AsyncPool(self)
        client: AsyncHelperClient | None = None
        for _attempt in range(max(1, self.max_reconnect_attempts)):
            client = await pool.checkout()
            if client is None:
                try:
                    client = await AsyncHelperClient.connect(
                        self.path, timeout=self.connect_timeout
                    )
                    self._set_connected(True)
                except ConnectError as exc:
                    self.log.debug("reconnect failed: %s", exc)
                    pool.discard(None)
                    await asyncio.sleep(self.reconnect_delay)
                    continue
            try:
                await client.send_request(request)
                break
            except RequestNotSentError:
                pool.discard(client)
                self._set_connected(False)
                client = None
            except LocalProtocolError:
                pool.checkin(client)
                raise
        if client is None:
            return _comm_failure()
        try:
            async with asyncio.timeout(self.command_timeout):
                response = await client.read_response()
        except (RemoteProtocolError, OSError) as exc:  # TimeoutError is an OSError
            self.log.warning("command %s failed: %s", request.cdb[:10].hex(), exc)
            pool.discard(client)
            self._set_connected(False)
            return _comm_failure()
        except BaseException:
            pool.discard(client)  # cancelled mid-command: the stream is out of step
            raise
        pool.checkin(client)
        self._set_connected(True)
        return self._result(response)


class _AsyncPool:
    """The connections one event loop uses; idle ones are watched by a task each."""

    def __init__(self, manager: PRManagerHelper) -> None:
        self.manager = manager
        self.idle: dict[AsyncHelperClient, asyncio.Task[None]] = {}
        self.total = 0
        self.freed = asyncio.Condition()

    async def checkout(self) -> AsyncHelperClient | None:
        async with self.freed:
            while True:
                if self.idle:
                    client, task = self.idle.popitem()
                    task.cancel()
                    # Let the watcher finish (and drop its reader) before the socket is used.
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    if task.cancelled():
                        return client
                    continue  # it saw the helper hang up: _watch discarded it
                if self.total < max(1, self.manager.pool_size):
                    self.total += 1
                    return None
                await self.freed.wait()

    def checkin(self, client: AsyncHelperClient) -> None:
        self.idle[client] = asyncio.get_running_loop().create_task(self._watch(client))
        self._notify()

    def discard(self, client: AsyncHelperClient | None) -> None:
        if client is not None:
            client.close()
        self.total -= 1
        self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self.freed:
                self.freed.notify()

        asyncio.get_running_loop().create_task(wake())

    async def _watch(self, client: AsyncHelperClient) -> None:
        await client.wait_closed()
        self.idle.pop(client, None)
        self.manager.log.info("the helper closed an idle connection")
        self.discard(client)
        self.manager._set_connected(False)

    def close(self) -> None:
        for client, task in list(self.idle.items()):
            with contextlib.suppress(RuntimeError):
                task.cancel()
            client.close()
        self.idle.clear()


class _IdleWatcher:
    """One thread per manager that sees idle connections hang up (epoll, level-triggered)."""

    def __init__(self, manager: PRManagerHelper) -> None:
        self.manager = weakref.ref(manager)
        self.epoll = select.epoll()
        self.clients: dict[int, HelperClient] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.epoll.register(self._wake_r, select.EPOLLIN)
        self._stopping = False
        self.thread = threading.Thread(
            target=self._run, name=f"qompr-helper-watch-{manager.id}", daemon=True
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
                manager = self.manager()
                if manager is None:
                    return  # the manager was garbage-collected without being finalized
                for fd, _mask in ready:
                    client = self.clients.get(fd)
                    if fd != self._wake_r and client is not None:
                        manager._idle_hung_up(client)
                del manager
        finally:
            self.epoll.close()
            _close_quietly(self._wake_r)
            _close_quietly(self._wake_w)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
