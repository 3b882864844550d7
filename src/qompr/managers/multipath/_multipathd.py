# SPDX-License-Identifier: MIT
"""A tiny client of multipathd's control socket (the protocol of libmpathcmd).

multipathd listens on the abstract unix socket ``@/org/kernel/linux/storage/multipathd`` and,
since multipath-tools 0.12.0, also on ``/run/multipathd.socket`` (for containers that do not
share the host's network namespace; docs/reference/libmpathpersist.md §5,
opensvc/multipath-tools#111).

A command is the native ``size_t`` length of the NUL-terminated command, then the command; the
reply is a ``size_t`` length, then the NUL-terminated text.  multipathd runs commands other than
``show``/``list`` only for root.
"""

from __future__ import annotations

import socket
import struct

from qompr.errors import ConnectError

__all__ = [
    "MULTIPATHD_ABSTRACT_SOCKET",
    "MULTIPATHD_PATH_SOCKET",
    "connect_multipathd",
    "multipathd_command",
]

#: The abstract socket name (without its leading NUL), ``DEFAULT_SOCKET`` in mpath_cmd.h.
MULTIPATHD_ABSTRACT_SOCKET = "/org/kernel/linux/storage/multipathd"
#: The pathname socket of multipath-tools 0.12.0 and later.
MULTIPATHD_PATH_SOCKET = "/run/multipathd.socket"
#: libmpathcmd's ``DEFAULT_REPLY_TIMEOUT`` (ms), in seconds.
DEFAULT_TIMEOUT = 4.0
_MAX_REPLY = 32 * 1024 * 1024  # MAX_REPLY_LEN
_SIZE_T = struct.Struct("@N")


def _addresses() -> tuple[tuple[str, str], ...]:
    return (
        ("\0" + MULTIPATHD_ABSTRACT_SOCKET, "@" + MULTIPATHD_ABSTRACT_SOCKET),
        (MULTIPATHD_PATH_SOCKET, MULTIPATHD_PATH_SOCKET),
    )


def connect_multipathd(timeout: float = DEFAULT_TIMEOUT) -> tuple[socket.socket, str]:
    """Connect to multipathd: the abstract socket first, then the pathname one.

    :returns: the connected socket and the address that answered (``@/org/...`` for the
        abstract one).
    :raises ConnectError: if neither socket accepts the connection; the message names both.
    """
    failures: list[str] = []
    last: OSError | None = None
    for address, shown in _addresses():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            failures.append(f"{shown}: {exc.strerror or exc}")
            last = exc
            continue
        return sock, shown
    raise ConnectError(
        "multipathd is not reachable (" + "; ".join(failures) + ")",
        last,
        hint="Start multipathd (systemctl start multipathd.socket multipathd); in a container, "
        "share the host's network namespace or mount /run/multipathd.socket (0.12.0 and later)",
    )


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectError("multipathd closed the connection before replying")
        buf += chunk
    return bytes(buf)


def multipathd_command(command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run one multipathd command (``show daemon``, ``getprkey map mpatha``) and return its reply.

    :raises ConnectError: if multipathd cannot be reached or the exchange fails.
    """
    sock, _ = connect_multipathd(timeout)
    with sock:
        try:
            payload = command.encode() + b"\0"
            sock.sendall(_SIZE_T.pack(len(payload)) + payload)
            (length,) = _SIZE_T.unpack(_recv_exact(sock, _SIZE_T.size))
            if length > _MAX_REPLY:
                raise ConnectError(f"multipathd announced a {length}-byte reply")
            reply = _recv_exact(sock, length)
        except ConnectError:
            raise
        except OSError as exc:
            raise ConnectError(f"multipathd command {command!r} failed: {exc}", exc) from None
    return reply.split(b"\0", 1)[0].decode(errors="replace")
