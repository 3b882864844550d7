# SPDX-License-Identifier: MIT
"""A small synchronous QMP client for guest programs of the VM test bed (standard library).

The bed's guest programs start QEMU processes and drive them (``migrate``, ``cont``,
``query-migrate``); a blocking client with deadlines is all they need, and it keeps the
guest's Python start cheap (no asyncio, no ``qemu.qmp``).  Every wait here is bounded:
:func:`wait_until` polls with a short pause and raises :class:`TimeoutError` at its deadline.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from typing import TypeVar

__all__ = ["QMP", "QMPError", "wait_until"]

T = TypeVar("T")


class QMPError(RuntimeError):
    """QEMU answered a command with an error."""


def wait_until(
    what: str, probe: Callable[[], T | None], deadline: float, *, pause: float = 0.1
) -> T:
    """Call *probe* until it returns something other than None; *deadline* is in seconds.

    The pause only spaces the polls out (one vCPU: a busy loop would slow what it waits for).
    """
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"gave up after {deadline:g}s waiting for {what}")
        time.sleep(pause)


class QMP:
    """One QMP connection (``-qmp unix:PATH,server=on,wait=off``); events are kept in
    :attr:`events`."""

    def __init__(self, path: str, *, timeout: float = 60.0) -> None:
        wait_until(f"QMP socket {path}", lambda: True if os.path.exists(path) else None, timeout)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.events: list[dict[str, Any]] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise ConnectionError("QEMU closed the QMP connection")
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run *command*; its ``return`` value, or :class:`QMPError`."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read()
            if "event" in message:
                self.events.append(message)
                continue
            if "error" in message:
                raise QMPError(f"{command}: {message['error']}")
            return message.get("return")

    def close(self) -> None:
        self.file.close()
        self.sock.close()
