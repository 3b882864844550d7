# SPDX-License-Identifier: MIT
"""``pr-manager-helper``'s connections for asyncio (:meth:`PRManagerHelper.run_async`).

Apart from :mod:`qompr.managers._helper` so that a program using the manager without an event
loop (``qompr persist --helper``) never imports asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING

from qompr.errors import ConnectError
from qompr.errors import RemoteProtocolError
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol.retry import Sent
from qompr.transport.aio import AsyncHelperClient

if TYPE_CHECKING:
    from qompr.managers._helper import PRManagerHelper

__all__ = ["AsyncPool"]


class AsyncPool:
    """The connections one event loop uses (a :class:`~qompr.protocol.retry.AsyncConnections`);
    idle ones are watched by a task each."""

    def __init__(self, manager: PRManagerHelper) -> None:
        self.manager = manager
        self.idle: dict[AsyncHelperClient, asyncio.Task[None]] = {}
        self.total = 0
        self.freed = asyncio.Condition()

    # -- the steps of a command (qompr.protocol.retry.Step) ----------------------------------
    async def checkout(self) -> AsyncHelperClient | None:
        async with self.freed:
            while True:
                self.manager._check_open()
                if self.idle:
                    client, task = self.idle.popitem()
                    task.cancel()
                    try:
                        # Let the watcher finish (and drop its reader) before the socket is
                        # used; cancelled meanwhile, the connection goes back unused.
                        await asyncio.shield(_settled(task))
                    except BaseException:
                        task.add_done_callback(functools.partial(self._return, client))
                        raise
                    if task.cancelled():
                        return client
                    continue  # it saw the helper hang up: _watch discarded it
                if self.total < max(1, self.manager.pool_size):
                    self.total += 1
                    return None
                await self.freed.wait()

    async def connect(self) -> AsyncHelperClient | None:
        manager = self.manager
        try:
            client = await AsyncHelperClient.connect(
                manager.path,
                timeout=manager.connect_timeout,
                features=manager.extension,
                identify=manager._identify,
            )
        except ConnectError as exc:
            manager.log.debug("reconnect failed: %s", exc)
            return None
        manager._set_connected(True)
        return client

    async def pause(self) -> None:
        await asyncio.sleep(self.manager.reconnect_delay)

    async def send(self, client: AsyncHelperClient, request: HelperRequest) -> Sent:
        try:
            await client.send_request(request)
        except OSError as exc:
            return self.manager._send_failed(request, exc)
        return Sent.ALL

    async def read(
        self, client: AsyncHelperClient, request: HelperRequest
    ) -> HelperResponse | None:
        try:
            async with asyncio.timeout(self.manager.command_timeout):
                response = await client.read_response()
        except (RemoteProtocolError, OSError) as exc:  # TimeoutError is an OSError
            self.manager._read_failed(request, exc)
            return None
        self.manager._set_connected(True)
        return response

    def checkin(self, client: AsyncHelperClient) -> None:
        self.idle[client] = asyncio.get_running_loop().create_task(self._watch(client))
        self._notify()

    def discard(self, client: AsyncHelperClient | None, *, lost: bool) -> None:
        if client is not None:
            client.close()
        self.total -= 1
        self._notify()
        if lost:
            self.manager._set_connected(False)

    # -- idle connections ----------------------------------------------------------------------
    def _return(self, client: AsyncHelperClient, watcher: asyncio.Task[None]) -> None:
        if watcher.cancelled():  # else it saw the helper hang up and discarded the client
            self.checkin(client)

    def _notify(self) -> None:
        async def wake() -> None:
            async with self.freed:
                self.freed.notify()

        asyncio.get_running_loop().create_task(wake())

    async def _watch(self, client: AsyncHelperClient) -> None:
        await client.wait_closed()
        self.idle.pop(client, None)
        self.manager.log.info("the helper closed an idle connection")
        self.discard(client, lost=True)

    def close(self) -> None:
        for client, task in list(self.idle.items()):
            with contextlib.suppress(RuntimeError):
                task.cancel()
            client.close()
        self.idle.clear()


async def _settled(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await task
