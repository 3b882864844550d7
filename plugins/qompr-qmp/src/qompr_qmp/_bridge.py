# SPDX-License-Identifier: MIT
"""``QmpBridge``: a running QEMU's pr-managers, seen and driven over QMP with qemu.qmp."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from qemu.qmp import ConnectError  # type: ignore[import-not-found, unused-ignore]
from qemu.qmp import ExecInterruptedError  # type: ignore[import-not-found, unused-ignore]
from qemu.qmp import ExecuteError  # type: ignore[import-not-found, unused-ignore]
from qemu.qmp import QMPClient  # type: ignore[import-not-found, unused-ignore]
from qemu.qmp import Runstate  # type: ignore[import-not-found, unused-ignore]
from qemu.qmp import StateError as QmpStateError  # type: ignore[import-not-found, unused-ignore]

from qompr.errors import StateError
from qompr_qmp._types import MANAGED_ALIAS
from qompr_qmp._types import PR_MANAGER_STATUS_CHANGED
from qompr_qmp._types import PrManagerStatus
from qompr_qmp._types import QmpCommandError
from qompr_qmp._types import QmpConnectError
from qompr_qmp._types import QmpDisconnectedError
from qompr_qmp._types import QmpError
from qompr_qmp._types import Recovery

__all__ = [
    "QmpBridge",
    "add_pr_helper",
    "delete_object",
    "list_pr_managers",
    "run_watch",
]

log = logging.getLogger("qompr_qmp")

#: Seconds to wait for QEMU's greeting.  QEMU serves one client per ``-qmp`` socket: a
#: second client's connect() succeeds but is not greeted until the first one leaves.
DEFAULT_TIMEOUT = 10.0


def _parse_status(msg: Mapping[str, object]) -> PrManagerStatus | None:
    if msg.get("event") != PR_MANAGER_STATUS_CHANGED:
        return None
    data = msg.get("data")
    if isinstance(data, Mapping):
        ident = data.get("id")
        connected = data.get("connected")
        if isinstance(ident, str) and isinstance(connected, bool):
            return PrManagerStatus(ident, connected)
    log.warning("ignoring malformed %s event: %r", PR_MANAGER_STATUS_CHANGED, dict(msg))
    return None


class QmpBridge:
    """One QMP connection to QEMU, for its persistent-reservation managers.

    Use it from asyncio::

        bridge = QmpBridge()
        await bridge.connect("/run/vm0/qmp.sock")
        print(await bridge.query_pr_managers())
        async for status in bridge.events():   # PrManagerStatus(id, connected)
            ...

    Only ``PR_MANAGER_STATUS_CHANGED`` events are kept (from the moment of :meth:`connect`),
    in one queue: run one consumer (:meth:`events` or :meth:`watch`) at a time.

    :param path: the QMP socket :meth:`connect` (or :meth:`watch`) uses by default.
    :param timeout: seconds :meth:`connect` waits for QEMU's greeting.
    :param name: the name qemu.qmp's logger uses for this connection.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        name: str = "qompr-qmp",
    ) -> None:
        self.timeout = timeout
        self.name = name
        self._path: str | None = None if path is None else os.fspath(path)
        # Created inside the event loop on first connect, then kept: its event queue
        # survives reconnections.
        self._client: QMPClient | None = None

    # -- connection ------------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The QMP socket: the last one given to the constructor or :meth:`connect`."""
        return self._path

    @property
    def connected(self) -> bool:
        """Whether the QMP session is up."""
        return self._client is not None and self._client.runstate == Runstate.RUNNING

    async def connect(self, path: str | os.PathLike[str] | None = None) -> None:
        """Connect to QEMU's QMP unix socket and negotiate capabilities.

        :param path: the socket (``-qmp unix:PATH,server=on,wait=off``); ``None`` reconnects
            to the previous one.
        :raises QmpConnectError: the socket cannot be reached or QEMU did not greet in time.
        :raises StateError: already connected.
        """
        if path is not None:
            self._path = os.fspath(path)
        if self._path is None:
            raise StateError("no QMP socket to connect to", state="idle")
        if self.connected:
            raise StateError(f"already connected to QMP socket '{self._path}'", state="running")
        if self._client is None:
            self._client = QMPClient(self.name)
            # The default listener would keep every event QEMU sends, forever: keep ours only.
            self._client.events.names = {PR_MANAGER_STATUS_CHANGED}
        client = self._client
        await self._reset()
        try:
            await asyncio.wait_for(client.connect(self._path), self.timeout)
        except TimeoutError as exc:
            raise QmpConnectError(
                f"QMP socket '{self._path}' did not greet within {self.timeout:g} s",
                hint="QEMU serves one client per -qmp socket; is another one connected?",
            ) from exc
        except ConnectError as exc:
            cause = exc.exc
            detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
            raise QmpConnectError(
                f"Failed to connect to QMP socket '{self._path}': {detail}"
            ) from exc
        log.debug("connected to QMP socket %s", self._path)

    async def _reset(self) -> None:
        """Bring a client whose peer hung up back to IDLE, so that it can connect again."""
        client = self._client
        if client is None or client.runstate == Runstate.IDLE:
            return
        try:
            await client.disconnect()
        except Exception as exc:  # the reader's EOFError/OSError when QEMU hung up
            log.debug("QMP connection to %s ended: %r", self._path, exc)

    async def disconnect(self) -> None:
        """Close the connection (no error if it is already closed)."""
        await self._reset()

    async def __aenter__(self) -> QmpBridge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    def _require(self) -> QMPClient:
        if self._client is None or not self.connected:
            raise QmpDisconnectedError(f"not connected to QMP socket '{self._path}'")
        return self._client

    # -- commands --------------------------------------------------------------------------

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> object:
        """Run any QMP command; return its ``return`` member.

        :raises QmpCommandError: QEMU answered with an error.
        :raises QmpDisconnectedError: not connected, or the connection closed meanwhile.
        """
        client = self._require()
        try:
            return await client.execute(command, arguments)
        except ExecuteError as exc:
            raise QmpCommandError(command, str(exc.error_class), str(exc)) from exc
        except (ExecInterruptedError, QmpStateError) as exc:
            raise QmpDisconnectedError(
                f"QMP connection to '{self._path}' closed during {command}"
            ) from exc

    async def query_pr_managers(self) -> list[dict[str, Any]]:
        """``query-pr-managers``: ``[{"id": ..., "connected": ...}, ...]`` as QEMU lists them."""
        answer = await self.execute("query-pr-managers")
        if not isinstance(answer, list):
            raise QmpError(f"query-pr-managers returned {answer!r}")
        managers: list[dict[str, Any]] = []
        for item in answer:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("id"), str)
                and isinstance(item.get("connected"), bool)
            ):
                raise QmpError(f"query-pr-managers returned an odd entry: {item!r}")
            managers.append(dict(item))
        return managers

    async def object_add(self, qom_type: str, id: str, **props: object) -> None:
        """``object-add`` of any user-creatable type."""
        await self.execute("object-add", {"qom-type": qom_type, "id": id, **props})

    async def object_add_pr_helper(self, id: str, path: str | os.PathLike[str]) -> None:
        """``object-add`` a ``pr-manager-helper`` talking to the helper socket *path*.

        QEMU connects to the helper while creating the object: on success it emits
        ``PR_MANAGER_STATUS_CHANGED`` (connected=true) before it answers; if the helper
        hangs up during the handshake, connected=false and this raises.

        :raises QmpCommandError: QEMU refused (socket unreachable, duplicate id, ...).
        """
        await self.object_add("pr-manager-helper", id, path=os.fspath(path))

    async def object_del(self, id: str) -> None:
        """``object-del``: remove ``/objects/<id>`` (QEMU emits no status event for it).

        :raises QmpCommandError: no such object, or it is in use (a drive's pr-manager).
        """
        await self.execute("object-del", {"id": id})

    # -- events ----------------------------------------------------------------------------

    async def _next_event(self, client: QMPClient) -> Mapping[str, object] | None:
        """The next queued event; ``None`` once the connection is gone and the queue empty."""
        listener = client.events
        while True:
            if not listener.empty():
                msg: Mapping[str, object] = await listener.get()
                return msg
            if client.runstate != Runstate.RUNNING:
                return None
            get = asyncio.ensure_future(listener.get())
            gone = asyncio.ensure_future(_until_not_running(client))
            try:
                await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (get, gone):
                    task.cancel()
                await asyncio.gather(get, gone, return_exceptions=True)
            if get.done() and not get.cancelled():
                got: Mapping[str, object] = get.result()
                return got
            # Disconnected: loop once more for events queued meanwhile (a woken but
            # cancelled get() leaves its item in the queue).

    async def events(self) -> AsyncIterator[PrManagerStatus]:
        """``PR_MANAGER_STATUS_CHANGED`` events, in order, as :class:`PrManagerStatus`.

        Ends when the QMP connection closes (after the events received before that).
        """
        client = self._require()
        while True:
            msg = await self._next_event(client)
            if msg is None:
                return
            status = _parse_status(msg)
            if status is not None:
                yield status

    async def watch(
        self,
        recovery: Recovery,
        *,
        managed_alias: str = MANAGED_ALIAS,
        reconnect_delay: float | None = None,
        on_event: Callable[[PrManagerStatus], object] | None = None,
        on_check: Callable[[list[dict[str, Any]]], object] | None = None,
    ) -> None:
        """React to the managed helper's state as libvirt does, until the connection closes.

        * At every (re)connect, ``query-pr-managers``: if *managed_alias* is missing or not
          connected, call ``recovery.handle_status_changed(managed_alias, False)``.
        * For each ``PR_MANAGER_STATUS_CHANGED``: connected=true is ignored, and so is a
          disconnect of any other id; a disconnect of *managed_alias* calls the recovery.

        The recovery runs in a worker thread (it may block, e.g. probing the helper); an
        exception from it is logged and watching goes on.

        :param recovery: e.g. ``qompr.embed.HelperSupervisor``.
        :param managed_alias: the id of the manager whose helper *recovery* runs.
        :param reconnect_delay: when QMP closes, reconnect after this many seconds (and again
            after a failed attempt); ``None`` returns instead.
        :param on_event: called with every event, before the reaction to it.
        :param on_check: called with the ``query-pr-managers`` answer of every (re)connect.
        :raises QmpConnectError: the first connect failed and *reconnect_delay* is ``None``.
        """
        while True:
            if not self.connected:
                try:
                    await self.connect()
                except QmpConnectError as exc:
                    if reconnect_delay is None:
                        raise
                    log.info("%s; retrying in %g s", exc, reconnect_delay)
                    await asyncio.sleep(reconnect_delay)
                    continue
            try:
                managers = await self.query_pr_managers()
                if on_check is not None:
                    on_check(managers)
                state = {m["id"]: m["connected"] for m in managers}
                if state.get(managed_alias) is not True:
                    what = "missing" if managed_alias not in state else "not connected"
                    log.warning("pr-manager %s is %s in QEMU: recovering", managed_alias, what)
                    await self._recover(recovery, managed_alias)
                async for status in self.events():
                    if on_event is not None:
                        on_event(status)
                    if status.id == managed_alias and not status.connected:
                        log.warning("pr-manager %s lost its helper: recovering", managed_alias)
                        await self._recover(recovery, managed_alias)
            except QmpDisconnectedError:
                pass
            await self._reset()
            if reconnect_delay is None:
                return
            log.info("QMP connection to %s closed; reconnecting", self._path)
            await asyncio.sleep(reconnect_delay)

    @staticmethod
    async def _recover(recovery: Recovery, alias: str) -> None:
        try:
            await asyncio.to_thread(recovery.handle_status_changed, alias, False)
        except Exception:
            log.exception("recovery of pr-manager %s failed", alias)


async def _until_not_running(client: QMPClient) -> None:
    while client.runstate == Runstate.RUNNING:
        await client.runstate_changed()


# -- synchronous conveniences --------------------------------------------------------------


def list_pr_managers(
    qmp_path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT
) -> list[dict[str, Any]]:
    """Connect, ``query-pr-managers``, disconnect."""

    async def run() -> list[dict[str, Any]]:
        async with QmpBridge(timeout=timeout) as bridge:
            await bridge.connect(qmp_path)
            return await bridge.query_pr_managers()

    return asyncio.run(run())


def add_pr_helper(
    qmp_path: str | os.PathLike[str],
    id: str,
    path: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Connect, ``object-add`` a ``pr-manager-helper``, disconnect."""

    async def run() -> None:
        async with QmpBridge(timeout=timeout) as bridge:
            await bridge.connect(qmp_path)
            await bridge.object_add_pr_helper(id, path)

    asyncio.run(run())


def delete_object(
    qmp_path: str | os.PathLike[str], id: str, *, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Connect, ``object-del``, disconnect."""

    async def run() -> None:
        async with QmpBridge(timeout=timeout) as bridge:
            await bridge.connect(qmp_path)
            await bridge.object_del(id)

    asyncio.run(run())


def run_watch(
    qmp_path: str | os.PathLike[str],
    recovery: Recovery,
    *,
    managed_alias: str = MANAGED_ALIAS,
    reconnect_delay: float | None = 1.0,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Block in :meth:`QmpBridge.watch` (reconnecting every *reconnect_delay* s by default)."""

    async def run() -> None:
        async with QmpBridge(qmp_path, timeout=timeout) as bridge:
            await bridge.watch(
                recovery, managed_alias=managed_alias, reconnect_delay=reconnect_delay
            )

    asyncio.run(run())
