# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``'s control interface: QMP-shaped JSON on a unix socket (``--control``).

The shape is QEMU's QMP, so its tools and habits carry over: the daemon greets with
``{"QMP": {"version": ..., "capabilities": []}}``, the client answers
``{"execute": "qmp_capabilities"}``, then sends commands ``{"execute": NAME, "arguments":
{...}, "id": ANY}`` one JSON object a line and gets ``{"return": ...}`` or ``{"error":
{"class": ..., "desc": ...}}`` back (with the same ``id``), one a line.  Errors use QMP's
classes and wording.

Commands (``query-commands`` lists them):

``query-stats``
    the server's statistics and one entry per open connection, as JSON; with
    ``"arguments": {"format": "prometheus"}`` the same as Prometheus text exposition
    (``{"return": {"text": ...}}``), for a node exporter's textfile collector or a scraper.

Adding a command (the migration-tracking queries of the live-migration work will):
:meth:`ControlServer.register` a name with a handler that takes the ``arguments`` object
and returns what goes under ``return``; raise :class:`CommandError` for an error answer.

:class:`ControlSession` is the sans-IO core (bytes in, bytes out); :class:`ControlServer`
moves its bytes on the daemon's event loop.  Bounds: at most :data:`MAX_CLIENTS` clients,
lines of at most :data:`MAX_LINE` bytes, at most :data:`MAX_PENDING` bytes of answers a client
has not read; beyond them the connection is closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from qompr.daemon._loop import Loop
from qompr.errors import QomprError

__all__ = [
    "MAX_CLIENTS",
    "MAX_LINE",
    "MAX_PENDING",
    "CommandError",
    "ControlServer",
    "ControlSession",
    "Handler",
]

log = logging.getLogger("qompr.daemon")

#: Most control connections open at once.
MAX_CLIENTS = 16
#: Longest command line accepted (bytes).
MAX_LINE = 65536
#: Most answer bytes a client may leave unread.
MAX_PENDING = 1 << 20

#: A command: takes the ``arguments`` object, returns what goes under ``return``.
Handler = Callable[[dict[str, Any]], Any]


class CommandError(QomprError):
    """An error answer: ``{"error": {"class": error_class, "desc": desc}}``.

    :param desc: QMP's human-readable description.
    :param error_class: QMP's error class (``GenericError``, ``CommandNotFound``...).
    """

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.error_class = error_class


class ControlSession:
    """One control connection, without I/O: feed it bytes, send what it returns.

    :param commands: name -> handler, shared by every session (``qmp_capabilities`` and
        ``query-commands`` are the session's own).
    :param version: ``(major, minor, micro)`` and a package string for the greeting.
    """

    def __init__(self, commands: dict[str, Handler], version: tuple[int, int, int], package: str):
        self._commands = commands
        self._buf = b""
        self.negotiated = False
        #: Set when the peer broke the framing (a line too long): close after the answer.
        self.broken = False
        major, minor, micro = version
        self._greeting = {
            "QMP": {
                "version": {
                    "qemu": {"major": major, "minor": minor, "micro": micro},
                    "package": package,
                },
                "capabilities": [],
            }
        }

    def greeting(self) -> bytes:
        """What the server sends first."""
        return _line(self._greeting)

    def receive(self, data: bytes) -> bytes:
        """Take received bytes; the answers to every complete line in them."""
        self._buf += data
        out = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if line.strip():
                out.append(_line(self._answer(line)))
        if len(self._buf) > MAX_LINE:
            self._buf = b""
            self.broken = True
            out.append(_line(_error(CommandError(f"Input line exceeds {MAX_LINE} bytes"))))
        return b"".join(out)

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return _error(CommandError(f"JSON parse error, {exc}"))
        if not isinstance(request, dict):
            return _error(CommandError("QMP input must be a JSON object"))
        answer = self._run(request)
        if "id" in request:
            answer["id"] = request["id"]
        return answer

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("execute")
        try:
            if name is None:
                raise CommandError("QMP input lacks member 'execute'")
            if not isinstance(name, str):
                raise CommandError("QMP input member 'execute' must be a string")
            extra = sorted(set(request) - {"execute", "arguments", "id"})
            if extra:
                raise CommandError(f"QMP input member '{extra[0]}' is unexpected")
            arguments = request.get("arguments", {})
            if not isinstance(arguments, dict):
                raise CommandError("QMP input member 'arguments' must be an object")
            if name == "qmp_capabilities":
                if self.negotiated:
                    raise CommandError(
                        "Capabilities negotiation is already complete, command ignored",
                        "CommandNotFound",
                    )
                _no_arguments(arguments)
                self.negotiated = True
                return {"return": {}}
            if not self.negotiated:
                raise CommandError(
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                    "CommandNotFound",
                )
            if name == "query-commands":
                _no_arguments(arguments)
                names = ["qmp_capabilities", "query-commands", *self._commands]
                return {"return": [{"name": n} for n in sorted(names)]}
            handler = self._commands.get(name)
            if handler is None:
                raise CommandError(f"The command {name} has not been found", "CommandNotFound")
            return {"return": handler(arguments)}
        except CommandError as exc:
            return _error(exc)


def _no_arguments(arguments: dict[str, Any]) -> None:
    if arguments:
        raise CommandError(f"Parameter '{sorted(arguments)[0]}' is unexpected")


def _error(exc: CommandError) -> dict[str, Any]:
    return {"error": {"class": exc.error_class, "desc": exc.desc}}


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\r\n"  # QEMU ends its QMP lines so


class _Client:
    __slots__ = ("fd", "outgoing", "session", "sock")

    def __init__(self, sock: socket.socket, session: ControlSession) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        self.outgoing = b""


class ControlServer:
    """Serves :class:`ControlSession` on a listening unix socket, on *loop*.

    :param listener: a bound, listening unix stream socket (0600: only its owner may ask).
    :param loop: the daemon's event loop.
    :param version: for the greeting: ``(major, minor, micro)`` and a package name.
    """

    def __init__(
        self,
        listener: socket.socket,
        loop: Loop,
        *,
        version: tuple[int, int, int] = (0, 0, 0),
        package: str = "qompr-pr-helper",
    ) -> None:
        self.listener = listener
        self.loop = loop
        self.version = version
        self.package = package
        self._commands: dict[str, Handler] = {}
        self._clients: dict[int, _Client] = {}
        self._closed = False

    def register(self, name: str, handler: Handler) -> None:
        """Offer command *name* (``query-...`` for queries, as QMP names them).

        :raises ValueError: the name is taken.
        """
        if name in self._commands or name in ("qmp_capabilities", "query-commands"):
            raise ValueError(f"control command '{name}' is already registered")
        self._commands[name] = handler

    def start(self) -> None:
        """Accept connections on the loop."""
        self.listener.setblocking(False)
        self.loop.add_reader(self.listener.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close every control connection."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            self.loop.remove_reader(self.listener.fileno())
        self.listener.close()
        for client in list(self._clients.values()):
            self._drop(client)

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:  # EAGAIN, or out of fds: the helper server backs off for both
            return
        if len(self._clients) >= MAX_CLIENTS:
            log.warning("control: %d connections open, closing a new one", len(self._clients))
            sock.close()
            return
        sock.setblocking(False)
        client = _Client(sock, ControlSession(self._commands, self.version, self.package))
        self._clients[client.fd] = client
        self.loop.add_reader(client.fd, self._readable, client)
        self._send(client, client.session.greeting())

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        try:
            answers = client.session.receive(data)
        except Exception:  # a handler's bug must not take the daemon down
            log.exception("control: internal error")
            self._drop(client)
            return
        self._send(client, answers)
        if client.session.broken:
            self._drop(client)

    def _send(self, client: _Client, data: bytes) -> None:
        data = client.outgoing + data
        if not data:
            return
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        client.outgoing = data[sent:]
        if len(client.outgoing) > MAX_PENDING:
            log.warning("control: a client does not read its answers, closing it")
            self._drop(client)
        elif client.outgoing:
            self.loop.add_writer(client.fd, self._writable, client)

    def _writable(self, client: _Client) -> None:
        self.loop.remove_writer(client.fd)
        self._send(client, b"")

    def _drop(self, client: _Client) -> None:
        if self._clients.pop(client.fd, None) is None:
            return
        self.loop.remove_reader(client.fd)
        self.loop.remove_writer(client.fd)
        client.sock.close()


def control_socket(path: str) -> socket.socket:
    """A listening unix socket at *path*, mode 0600 (any old file there is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen(MAX_CLIENTS)
    return sock
