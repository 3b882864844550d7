# SPDX-License-Identifier: MIT
"""``pr-manager-helper``: hands PR commands to a qemu-pr-helper over its unix socket.

This module holds the QOM type and its connection life cycle as QEMU's client has it: the
socket is connected and the 4-byte feature negotiation done in ``complete()``, so creation
fails with QEMU's message when the helper cannot be reached.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading

from qompr.errors import ConnectError
from qompr.managers._base import PRManager
from qompr.qom import StringProperty

__all__ = ["PRManagerHelper", "connect_unix"]

#: sun_path holds 108 bytes including the terminating NUL (QEMU: "less than 108 bytes").
UNIX_PATH_MAX = 108
#: How long the handshake may take; QEMU waits forever, which hangs a VM on a stuck helper.
HANDSHAKE_TIMEOUT = 5.0


def connect_unix(path: str, timeout: float | None = HANDSHAKE_TIMEOUT) -> socket.socket:
    """Connect to a unix socket with QEMU's error texts (util/qemu-sockets.c)."""
    encoded = os.fsencode(path)
    if len(encoded) >= UNIX_PATH_MAX:
        raise ConnectError(
            f"UNIX socket path '{path}' is too long", hint="Path must be less than 108 bytes"
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(encoded)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConnectError(f"Failed to connect to '{path}': {reason}", exc) from None
    return sock


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectError("connection closed", OSError(errno.ECONNRESET, "closed"))
        buf += chunk
    return bytes(buf)


class PRManagerHelper(PRManager, qom_type="pr-manager-helper"):
    """Client of a ``qemu-pr-helper`` (or ``qompr-pr-helper``) socket."""

    path = StringProperty(
        mandatory=True,
        description=None,
    )

    def instance_init(self) -> None:
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def instance_finalize(self) -> None:
        self._disconnect(announce=False)

    def complete(self) -> None:
        """Connect and negotiate features, as QEMU's ``pr_manager_helper_complete``."""
        with self._lock:
            self._connect()

    def _connect(self) -> None:
        sock = connect_unix(self.path)
        try:
            struct.unpack(">I", _recv_exact(sock, 4))  # supported features: none are defined
            sock.sendall(struct.pack(">I", 0))  # we request none
        except OSError as exc:
            sock.close()
            if isinstance(exc, ConnectError):
                raise
            raise ConnectError(f"Failed to negotiate with '{self.path}': {exc}", exc) from None
        sock.settimeout(None)
        self._sock = sock
        self.status_changed(True)

    def _disconnect(self, *, announce: bool = True) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if announce:
                self.status_changed(False)

    def is_connected(self) -> bool:
        return self._sock is not None
