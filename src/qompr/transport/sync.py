# SPDX-License-Identifier: MIT
"""The blocking client side of the qemu-pr-helper protocol: ``recvmsg``/``sendmsg`` with
SCM_RIGHTS.

The protocol core (:mod:`qompr.protocol`) decides what to read and what to send; this module
only moves bytes and descriptors.  :class:`HelperClient` is one client connection; the
``pr-manager-helper`` manager pools several of them.  The primitives both ends share are in
:mod:`qompr.transport.unix`.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import select
import socket
import time
from collections.abc import Iterator
from collections.abc import Sequence
from types import TracebackType
from typing import TypeAlias

from qompr.errors import ConnectError
from qompr.errors import RemoteProtocolError
from qompr.protocol import EOF_MESSAGE
from qompr.protocol import NEED_DATA
from qompr.protocol import ConnectionClosed
from qompr.protocol import Feature
from qompr.protocol import Granted
from qompr.protocol import Handshake
from qompr.protocol import HelperConnection
from qompr.protocol import HelperRequest
from qompr.protocol import HelperResponse
from qompr.protocol import Identify
from qompr.protocol import Negotiated
from qompr.protocol import ReadSpec
from qompr.protocol import Role
from qompr.protocol.extension import identify_refused_text
from qompr.protocol.extension import no_extension_text
from qompr.protocol.extension import refusal_text
from qompr.transport.unix import check_unix_path
from qompr.transport.unix import raw_connect
from qompr.transport.unix import reason
from qompr.transport.unix import recv_spec

__all__ = [
    "ClientEvent",
    "ClientSocket",
    "HelperClient",
    "NegotiationErrors",
    "RequestNotSentError",
    "check_idle",
    "connect_unix",
    "naming_errors",
    "send_all",
    "send_some",
]

#: What a client connection can receive.
ClientEvent: TypeAlias = Negotiated | Granted | HelperResponse | ConnectionClosed

#: The CDB travels first; an error before all of it is out leaves the command unsent.
_CDB_BYTES = 16


class RequestNotSentError(ConnectError):
    """Sending failed before the whole CDB was out, so the command may be retried.

    :param message: what failed.
    :param cause: the socket error.
    """


def connect_unix(path: str, timeout: float | None = None) -> socket.socket:
    """Connect to a unix socket, with QEMU's error texts (util/qemu-sockets.c).

    :param path: the socket path.
    :param timeout: the longest wait for room in a full listen backlog (QEMU blocks), and
        the timeout for later I/O on the socket.
    :raises ConnectError: ``UNIX socket path '%s' is too long`` or
        ``Failed to connect to '%s': <strerror>``.
    """
    encoded = check_unix_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        err = raw_connect(sock, encoded)
        if err != errno.EAGAIN or (deadline is not None and time.monotonic() > deadline):
            break
        time.sleep(0.005)  # a unix listener's backlog is full: wait for the accept
    if err:
        sock.close()
        cause = OSError(err, os.strerror(err))
        raise ConnectError(f"Failed to connect to '{path}': {os.strerror(err)}", cause)
    sock.settimeout(timeout)
    return sock


def _wait(sock: socket.socket, events: int, deadline: float | None) -> None:
    timeout = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
    poller = select.poll()
    poller.register(sock.fileno(), events)
    if not poller.poll(timeout):
        raise TimeoutError(errno.ETIMEDOUT, "timed out")


def send_all(
    sock: socket.socket,
    data: bytes,
    fds: Sequence[int] = (),
    *,
    deadline: float | None = None,
) -> None:
    """Send *data*, the *fds* riding on its first byte, blocking or non-blocking alike.

    :param deadline: a :func:`time.monotonic` time to give up at (non-blocking sockets).
    :raises RequestNotSentError: an error before the first 16 bytes (the CDB) were all sent.
    :raises OSError: an error after that, or a timeout.
    """
    sent = 0
    view = memoryview(data)
    while sent < len(data):
        try:
            sent += send_some(sock, view, sent, fds)
        except (BlockingIOError, InterruptedError):
            try:
                _wait(sock, select.POLLOUT, deadline)
            except TimeoutError as exc:
                if sent < _CDB_BYTES:
                    raise RequestNotSentError("timed out sending the CDB", exc) from exc
                raise


def check_idle(sock: socket.socket, conn: HelperConnection) -> None:
    """Before a request: take whatever the helper sent since its last answer, unasked.

    A helper says nothing between two answers, so any byte there (a handshake longer than
    4 bytes, junk after a response) means the stream is out of step; read as the start of
    the next response it would shift every answer after it.  The connection is then broken,
    but the command was not sent: it may go out on another connection.

    :raises RequestNotSentError: the helper sent unasked bytes or hung up.
    """
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    # Poll first: on a socket with a timeout, recv waits for data before trying.
    while poller.poll(0):
        try:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise RequestNotSentError(reason(exc), exc) from exc
        conn.receive_data(data)
        try:
            event = conn.next_event()
        except RemoteProtocolError as exc:
            raise RequestNotSentError(exc.message, exc) from None
        if isinstance(event, ConnectionClosed):
            raise RequestNotSentError("the helper closed the connection")


def send_some(sock: socket.socket, view: memoryview, sent: int, fds: Sequence[int]) -> int:
    """One ``send`` of what is left after *sent* bytes; the *fds* ride on byte 0.

    :returns: how many bytes went out.
    :raises BlockingIOError: the socket is full (non-blocking); wait and call again.
    :raises RequestNotSentError: an error before the CDB was all out (the command may be
        retried on another connection).
    :raises OSError: an error after that.
    """
    try:
        if sent == 0 and fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            return sock.sendmsg([view], ancillary)
        return sock.send(view[sent:])
    except (BlockingIOError, InterruptedError):
        raise
    except OSError as exc:
        if sent < _CDB_BYTES:
            raise RequestNotSentError(reason(exc), exc) from exc
        raise


class NegotiationErrors:
    """Context manager around a handshake: its failures as QEMU's :class:`ConnectError` texts.

    Set :attr:`asked` once qompr's bits were asked for: a helper hanging up after that is
    one without the extension.  The blocking and asyncio clients share it.

    :param path: the socket path, for messages.
    :param timeouts: a socket timeout reads as such (blocking sockets only).
    """

    def __init__(self, path: str, *, timeouts: bool) -> None:
        self.path = path
        self.timeouts = timeouts
        self.asked = False

    def __enter__(self) -> NegotiationErrors:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, ConnectError):
            return
        if isinstance(exc, RemoteProtocolError):
            if self.asked and exc.message == EOF_MESSAGE:
                raise ConnectError(no_extension_text(self.path), exc) from None
            raise ConnectError(exc.message, exc) from None
        if self.timeouts and isinstance(exc, TimeoutError):
            raise ConnectError(f"Timed out negotiating with '{self.path}'", exc) from None
        if isinstance(exc, OSError):
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConnectError(f"Failed to negotiate with '{self.path}': {why}", exc) from None

    def check_grant(self, features: Feature, granted: Granted) -> None:
        """:raises ConnectError: the helper did not grant every bit of *features*."""
        refused = refusal_text(self.path, features, granted.features, os.geteuid())
        if refused is not None:
            raise ConnectError(refused)


@contextlib.contextmanager
def naming_errors(path: str) -> Iterator[None]:
    """Around an :class:`Identify` exchange: its failures as :class:`ConnectError`."""
    try:
        yield
    except RemoteProtocolError as exc:
        raise ConnectError(f"'{path}': {exc.message}", exc) from None
    except OSError as exc:
        raise ConnectError(f"'{path}': naming the initiator failed: {exc}", exc) from None


class ClientSocket:
    """What the blocking and asyncio clients share: one connection's socket and protocol state.

    :param sock: a connected unix stream socket.
    :param path: the socket path, for messages.
    """

    def __init__(self, sock: socket.socket, path: str = "") -> None:
        self.sock = sock
        self.path = path
        self.conn = HelperConnection(Role.CLIENT)
        #: The feature mask the helper announced.
        self.supported = 0

    def fileno(self) -> int:
        """The socket's fd (-1 once closed)."""
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket."""
        self.conn.close()
        self.sock.close()

    def _event_or_read(self) -> ClientEvent | ReadSpec:
        """The next event a client can see, or what to read before there is one."""
        event = self.conn.next_event()
        if event is NEED_DATA:
            return self.conn.next_read()
        assert isinstance(event, Negotiated | Granted | HelperResponse | ConnectionClosed)
        return event


class HelperClient(ClientSocket):
    """One blocking client connection to a qemu-pr-helper.

    :param sock: a connected unix stream socket (its timeout applies to every read/write).
    :param path: the socket path, for messages.
    """

    @classmethod
    def connect(
        cls,
        path: str,
        *,
        timeout: float | None = None,
        features: Feature = Feature.NONE,
        identify: Identify | None = None,
    ) -> HelperClient:
        """Connect and negotiate, as QEMU's ``pr_manager_helper_initialize``.

        :param timeout: for the connect, the handshake and (afterwards) every read/write.
        :param features: qompr's extension bits to ask for (:mod:`qompr.protocol.extension`);
            QEMU asks for none.  Naming is asked for too when *identify* is given.
        :param identify: the initiator (and target port) to name the connection with.
        :raises ConnectError: QEMU's texts; ``Unexpected end-of-file before all data were
            read`` when the helper hangs up during the handshake; a helper that lacks or
            refuses the extension asked for, or the name, is an error too.
        """
        if identify is not None:
            features |= Feature.QOMPR_NAMING
        client = cls(connect_unix(path, timeout), path)
        try:
            client.handshake(features)
            if identify is not None:
                client.identify(identify)
        except BaseException:
            client.close()
            raise
        return client

    def handshake(self, features: Feature = Feature.NONE) -> int:
        """Read the helper's feature mask and answer with *features*; with qompr's bits,
        read the grant too.

        :returns: the mask the helper announced (QEMU ignores it; so do we).
        :raises ConnectError: the helper hung up, broke the protocol, timed out, or did not
            grant every bit of *features*.
        """
        with NegotiationErrors(self.path, timeouts=True) as errors:
            event = self._next_event()
            if not isinstance(event, Negotiated):  # pragma: no cover - table guarantees it
                raise RemoteProtocolError(f"unexpected {event!r} during the handshake")
            self.supported = event.features
            send_all(self.sock, self.conn.send(Handshake(features)))
            errors.asked = bool(features)
            if errors.asked:
                granted = self._next_event()
                assert isinstance(granted, Granted)
                errors.check_grant(features, granted)
        return self.supported

    def identify(self, message: Identify) -> None:
        """Name this connection's initiator (qompr's extension, granted by the handshake).

        :raises ConnectError: the helper refused the name, hung up or timed out.
        """
        with naming_errors(self.path):
            send_all(self.sock, self.conn.send(message))
            response = self.read_response()
        if response.status != 0:
            raise ConnectError(identify_refused_text(self.path, message))

    def send_request(self, request: HelperRequest) -> None:
        """Send one command, its fd on the CDB.

        :raises qompr.errors.LocalProtocolError: a malformed request.
        :raises RequestNotSentError: the CDB did not get out (the helper went away, or sent
            bytes nobody asked for: :func:`check_idle`).
        :raises OSError: a failure after the CDB was sent.
        """
        check_idle(self.sock, self.conn)
        data = self.conn.send(request)
        send_all(self.sock, data, (request.fd,))

    def read_response(self) -> HelperResponse:
        """Wait for the response to the request in flight.

        :raises RemoteProtocolError: the helper hung up or lied (size, status, extra bytes).
        :raises OSError: a socket error or timeout.
        """
        event = self._next_event()
        if not isinstance(event, HelperResponse):
            raise RemoteProtocolError(EOF_MESSAGE)
        return event

    def command(self, request: HelperRequest) -> HelperResponse:
        """:meth:`send_request` then :meth:`read_response`."""
        self.send_request(request)
        return self.read_response()

    def hung_up(self) -> bool:
        """Without blocking: has the helper closed this idle connection (or sent junk)?"""
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        if not poller.poll(0):
            return False
        try:
            data = self.sock.recv(1, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        self.conn.receive_data(data)
        try:
            event = self.conn.next_event()
        except RemoteProtocolError:
            return True
        return isinstance(event, ConnectionClosed)

    def _next_event(self) -> ClientEvent:
        while isinstance(step := self._event_or_read(), ReadSpec):
            self.conn.receive_data(*recv_spec(self.sock, step))
        return step
