# SPDX-License-Identifier: MIT
"""``pr-manager-helper``: hands PR commands to a qemu-pr-helper over its unix socket.

This module holds the QOM type and its connection life cycle as QEMU's client has it: the
socket is connected and the 4-byte feature negotiation done in ``complete()``, so creation
fails with QEMU's message when the helper cannot be reached.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import threading

from qompr.errors import ConnectError
from qompr.managers._base import PRManager
from qompr.qom import StringProperty

__all__ = ["PRManagerHelper", "connect_unix"]

#: sun_path holds 108 bytes; QEMU accepts a path that fills it (no NUL needed) and refuses
#: longer ones with the hint "Path must be less than 108 bytes".
UNIX_PATH_MAX = 108
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.connect.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.connect.restype = ctypes.c_int

#: How long the handshake may take; QEMU waits forever, which hangs a VM on a stuck helper.
HANDSHAKE_TIMEOUT = 5.0


def connect_unix(path: str, timeout: float | None = HANDSHAKE_TIMEOUT) -> socket.socket:
    """Connect to a unix socket with QEMU's error texts (util/qemu-sockets.c)."""
    encoded = os.fsencode(path)
    if len(encoded) > UNIX_PATH_MAX:
        raise ConnectError(
            f"UNIX socket path '{path}' is too long", hint="Path must be less than 108 bytes"
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Like QEMU, pass the whole zero-padded sockaddr_un: a 108-byte path needs no NUL (Python's
    # own connect() refuses it), and an empty path is the abstract name of 107 NUL bytes.
    addr = struct.pack("=H108s", socket.AF_UNIX, encoded)
    if _libc.connect(sock.fileno(), addr, len(addr)) != 0:
        err = ctypes.get_errno()
        sock.close()
        raise ConnectError(
            f"Failed to connect to '{path}': {os.strerror(err)}", OSError(err, os.strerror(err))
        )
    sock.settimeout(timeout)
    return sock


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            # QEMU's qio_channel_read_all_eof wording.
            raise ConnectError(
                "Unexpected end-of-file before all data were read",
                OSError(errno.ECONNRESET, "closed"),
            )
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
