# SPDX-License-Identifier: MIT
"""The asyncio client side of the qemu-pr-helper protocol (named ``aio``: a module called
``asyncio`` would shadow the standard library's inside this package).

asyncio's transports cannot pass file descriptors (qemu.qmp had to reach into
``sock._sock`` for that), so this adapter keeps a plain non-blocking socket and waits for
readiness with ``loop.add_reader`` / ``loop.add_writer``, calling ``recvmsg`` / ``sendmsg``
itself.  No threads are involved.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Sequence

from qompr.errors import ConnectError
from qompr.errors import RemoteProtocolError
from qompr.protocol import EOF_MESSAGE
from qompr.protocol import ConnectionClosed
from qompr.protocol import Feature
from qompr.protocol import Granted
from qompr.protocol import Handshake
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol import Identify
from qompr.protocol import Negotiated
from qompr.protocol import ReadSpec
from qompr.protocol.extension import identify_refused_text
from qompr.transport import unix
from qompr.transport.sync import ClientEvent
from qompr.transport.sync import ClientSocket
from qompr.transport.sync import NegotiationErrors
from qompr.transport.sync import check_idle
from qompr.transport.sync import naming_errors
from qompr.transport.sync import send_some
from qompr.transport.unix import check_unix_path
from qompr.transport.unix import raw_connect

__all__ = ["AsyncHelperClient", "recv_spec", "send_all", "wait_readable"]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_readable(sock: socket.socket) -> None:
    """Wait until *sock* is readable (data, end of file or an error)."""
    await _wait(sock, writable=False)


async def _wait_writable(sock: socket.socket) -> None:
    await _wait(sock, writable=True)


async def _wait(sock: socket.socket, *, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    if writable:
        loop.add_writer(fd, _wake, fut)
    else:
        loop.add_reader(fd, _wake, fut)
    try:
        await fut
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def recv_spec(sock: socket.socket, spec: ReadSpec) -> tuple[bytes, list[int]]:
    """:func:`qompr.transport.unix.recv_spec` awaiting readiness on a non-blocking socket."""
    while True:
        try:
            return unix.recv_spec(sock, spec)
        except (BlockingIOError, InterruptedError):
            await wait_readable(sock)


async def send_all(sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """:func:`qompr.transport.sync.send_all` for a non-blocking socket.

    :raises RequestNotSentError: an error before the first 16 bytes were sent.
    """
    sent = 0
    view = memoryview(data)
    while sent < len(data):
        try:
            sent += send_some(sock, view, sent, fds)
        except (BlockingIOError, InterruptedError):
            await _wait_writable(sock)


class AsyncHelperClient(ClientSocket):
    """One asyncio client connection to a qemu-pr-helper.

    Use :meth:`connect`; wrap calls in :func:`asyncio.timeout` to bound them.

    :param sock: a connected non-blocking unix stream socket.
    :param path: the socket path, for messages.
    """

    def __init__(self, sock: socket.socket, path: str = "") -> None:
        sock.setblocking(False)
        super().__init__(sock, path)

    @classmethod
    async def connect(
        cls,
        path: str,
        *,
        timeout: float | None = None,
        features: Feature = Feature.NONE,
        identify: Identify | None = None,
    ) -> AsyncHelperClient:
        """Connect and negotiate (QEMU's ``pr_manager_helper_initialize``).

        :param timeout: for the connect and the handshake together.
        :param features: qompr's extension bits to ask for (as
            :meth:`qompr.transport.sync.HelperClient.connect`).
        :param identify: the initiator (and target port) to name the connection with.
        :raises ConnectError: with QEMU's texts, or a timeout message.
        """
        if identify is not None:
            features |= Feature.QOMPR_NAMING
        encoded = check_unix_path(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    err = raw_connect(sock, encoded)
                    if err != errno.EAGAIN:  # EAGAIN: the listen backlog is full
                        break
                    await asyncio.sleep(0.01)
                if err:
                    cause = OSError(err, os.strerror(err))
                    raise ConnectError(f"Failed to connect to '{path}': {os.strerror(err)}", cause)
                client = cls(sock, path)
                await client.handshake(features)
                if identify is not None:
                    await client.identify(identify)
        except TimeoutError as exc:
            sock.close()
            raise ConnectError(f"Timed out connecting to '{path}'", exc) from None
        except BaseException:
            sock.close()
            raise
        return client

    async def handshake(self, features: Feature = Feature.NONE) -> int:
        """Read the helper's mask and answer with *features*; with qompr's bits, read the
        grant too.

        :raises ConnectError: the helper hung up, broke the protocol, or did not grant every
            bit of *features*.
        """
        with NegotiationErrors(self.path, timeouts=False) as errors:
            event = await self._next_event()
            if not isinstance(event, Negotiated):  # pragma: no cover - table guarantees it
                raise RemoteProtocolError(f"unexpected {event!r} during the handshake")
            self.supported = event.features
            await send_all(self.sock, self.conn.send(Handshake(features)))
            errors.asked = bool(features)
            if errors.asked:
                granted = await self._next_event()
                assert isinstance(granted, Granted)
                errors.check_grant(features, granted)
        return self.supported

    async def identify(self, message: Identify) -> None:
        """Name this connection's initiator (qompr's extension, granted by the handshake).

        :raises ConnectError: the helper refused the name or hung up.
        """
        with naming_errors(self.path):
            await send_all(self.sock, self.conn.send(message))
            response = await self.read_response()
        if response.status != 0:
            raise ConnectError(identify_refused_text(self.path, message))

    async def send_request(self, request: HelperRequest) -> None:
        """Send one command with its fd.

        :raises RequestNotSentError: the CDB did not get out.
        """
        check_idle(self.sock, self.conn)
        await send_all(self.sock, self.conn.send(request), (request.fd,))

    async def read_response(self) -> HelperResponse:
        """Wait for the response to the request in flight.

        :raises RemoteProtocolError: the helper hung up or lied.
        """
        event = await self._next_event()
        if not isinstance(event, HelperResponse):
            raise RemoteProtocolError(EOF_MESSAGE)
        return event

    async def command(self, request: HelperRequest) -> HelperResponse:
        """:meth:`send_request` then :meth:`read_response`."""
        await self.send_request(request)
        return await self.read_response()

    async def wait_closed(self) -> None:
        """Return when the helper hangs up this idle connection (or sends junk)."""
        while True:
            event = await self._next_event_or_error()
            if event is None or isinstance(event, ConnectionClosed):
                return

    async def _next_event_or_error(
        self,
    ) -> Negotiated | Granted | HelperResponse | ConnectionClosed | None:
        try:
            return await self._next_event()
        except (RemoteProtocolError, OSError):
            return None

    async def _next_event(self) -> ClientEvent:
        while isinstance(step := self._event_or_read(), ReadSpec):
            self.conn.receive_data(*await recv_spec(self.sock, step))
        return step
