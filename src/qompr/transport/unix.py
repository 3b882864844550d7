# SPDX-License-Identifier: MIT
"""Unix-socket primitives both ends of the qemu-pr-helper protocol use.

Nothing here knows which side it is on: the daemon (:mod:`qompr.daemon`) binds and reads
requests with these, the clients (:mod:`qompr.transport.sync`, :mod:`qompr.transport.aio`)
connect and read responses with them.

* :func:`check_unix_path`, :func:`raw_bind`, :func:`raw_connect`: ``sun_path`` handling as QEMU
  does it (a 108-byte path needs no NUL; QEMU's texts for a longer one);
* :func:`recv_spec`: one read exactly as :meth:`qompr.protocol.HelperConnection.next_read`
  asks for it (a control buffer only when fds may come), so the kernel treats the stream as it
  does for qemu-pr-helper;
* :func:`fds_from_ancillary`: the descriptors of ``recvmsg`` ancillary data.
"""

from __future__ import annotations

import array
import functools
import os
import socket
import struct
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from qompr.errors import ConnectError
from qompr.protocol import MAX_FDS
from qompr.protocol import ReadSpec

if TYPE_CHECKING:
    import ctypes

__all__ = [
    "ANCILLARY_SIZE",
    "UNIX_PATH_MAX",
    "check_unix_path",
    "fds_from_ancillary",
    "raw_bind",
    "raw_connect",
    "reason",
    "recv_spec",
]

#: sun_path holds 108 bytes; QEMU accepts a path that fills it (no NUL needed) and refuses
#: longer ones with the hint "Path must be less than 108 bytes".
UNIX_PATH_MAX = 108
#: Control buffer for :data:`~qompr.protocol.MAX_FDS` descriptors, as qemu-pr-helper sizes it.
ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


def reason(exc: OSError) -> str:
    """``strerror`` of *exc* (QEMU's wording), or what it says when it has no errno."""
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


def check_unix_path(path: str) -> bytes:
    """*path* encoded for ``sun_path``.

    :raises ConnectError: ``UNIX socket path '%s' is too long`` beyond 108 bytes.
    """
    encoded = os.fsencode(path)
    if len(encoded) > UNIX_PATH_MAX:
        raise ConnectError(
            f"UNIX socket path '{path}' is too long", hint="Path must be less than 108 bytes"
        )
    return encoded


@functools.cache
def _libc() -> ctypes.CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _raw(bind: bool, sock: socket.socket, encoded: bytes) -> int:
    # Python's bind/connect need a NUL inside sun_path, so a 108-byte path takes the C call
    # with the whole zero-padded sockaddr_un.  ctypes is loaded for that case only: the
    # daemon's start-up should not pay for it.
    import ctypes

    libc = _libc()
    function = libc.bind if bind else libc.connect
    addr = struct.pack("=H108s", socket.AF_UNIX, encoded)
    if function(sock.fileno(), ctypes.c_char_p(addr), ctypes.c_uint32(len(addr))) != 0:
        return ctypes.get_errno()
    return 0


def _via_socket(method: Any, encoded: bytes) -> int:
    try:
        method(encoded)
    except OSError as exc:
        return exc.errno or 0
    return 0


def raw_connect(sock: socket.socket, encoded: bytes) -> int:
    """``connect(2)`` with the whole zero-padded ``sockaddr_un``, as QEMU passes it.

    A 108-byte path needs no NUL (Python's own ``connect`` refuses it), and an empty path is
    the abstract name of 107 NUL bytes (so QEMU answers "Connection refused").

    :returns: 0, or the errno.
    """
    if 0 < len(encoded) < UNIX_PATH_MAX and not encoded.startswith(b"\0"):
        return _via_socket(sock.connect, encoded)
    return _raw(False, sock, encoded)


def raw_bind(sock: socket.socket, encoded: bytes) -> int:
    """``bind(2)`` with the whole zero-padded ``sockaddr_un`` (a 108-byte path works).

    :returns: 0, or the errno.
    """
    if 0 < len(encoded) < UNIX_PATH_MAX and not encoded.startswith(b"\0"):
        return _via_socket(sock.bind, encoded)
    return _raw(True, sock, encoded)


def fds_from_ancillary(ancdata: Sequence[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in ``recvmsg`` ancillary data (SCM_RIGHTS), in order."""
    if not ancdata:
        return []
    if len(ancdata) == 1:  # the usual case: one message with one fd
        level, kind, data = ancdata[0]
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(data) == 4:
            return [int.from_bytes(data, sys.byteorder, signed=True)]
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fds.itemsize
            fds.frombytes(data[:usable])
    return list(fds)


def recv_spec(sock: socket.socket, spec: ReadSpec) -> tuple[bytes, list[int]]:
    """One read as *spec* says: ``recvmsg`` with room for 16 fds, or a plain ``recv``.

    A plain ``recv`` makes the kernel close any fds that came with the bytes, exactly as
    qemu-pr-helper's reads without a control buffer do.

    :raises BlockingIOError: on a non-blocking socket with nothing to read.
    """
    if spec.fds:
        data, ancdata, _flags, _addr = sock.recvmsg(
            spec.size, ANCILLARY_SIZE, socket.MSG_CMSG_CLOEXEC
        )
        return data, fds_from_ancillary(ancdata)
    return sock.recv(spec.size), []
