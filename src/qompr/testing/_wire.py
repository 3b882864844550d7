# SPDX-License-Identifier: MIT
"""A raw qemu-pr-helper client for tests, independent of qompr's own protocol code.

Tests of a helper (qompr-pr-helper, qemu-pr-helper, or a manager served by one) talk to it
with these, byte for byte as QEMU does: :func:`connected` opens a connection and does the
handshake, :func:`request` sends one request (optionally with an fd) and reads its reply.
Because none of this uses :mod:`qompr.protocol`, a bug there cannot hide itself.

Wire format (QEMU's ``scsi/pr-helper.h``): the helper sends 4 feature bytes and reads the
client's 4; a request is a 16-byte CDB followed by the PR OUT parameter list (its length is
the CDB's), with the fd as SCM_RIGHTS on the first byte; a reply is status and data length
(two big-endian int32), 96 sense bytes, then the data.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from qompr.testing._errors import HelperExitedError
from qompr.testing._errors import PeerClosedError
from qompr.testing._errors import UnexpectedReplyError
from qompr.testing._errors import WaitTimeoutError

__all__ = [
    "HANDSHAKE",
    "REPLY_HEADER_SIZE",
    "connected",
    "is_closed",
    "recv_exact",
    "request",
    "wait_for_socket",
]

#: The handshake of a helper or client that supports no optional feature.
HANDSHAKE = b"\0\0\0\0"
#: Status (4), data length (4) and sense (96) bytes that start every reply.
REPLY_HEADER_SIZE = 104
_POLL_SECONDS = 0.02


def wait_for_socket(
    path: str, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    """Wait until something accepts connections on the unix socket *path*.

    :param timeout: seconds to wait in all.
    :param proc: the process expected to listen; if it exits first, waiting stops at once.
    :raises HelperExitedError: *proc* exited before listening.
    :raises WaitTimeoutError: nothing listened within *timeout*.
    :raises OSError: connecting failed for another reason than "not there yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise HelperExitedError(
                f"the helper exited with status {proc.returncode} before listening on {path}",
                status=proc.returncode,
            )
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    raise
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"nothing listens on {path} after {timeout:g} s")
        time.sleep(_POLL_SECONDS)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly *size* bytes from *sock*.

    :raises PeerClosedError: at end of file before *size* bytes.
    """
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise PeerClosedError(f"end of file after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


@contextlib.contextmanager
def connected(
    path: str, *, handshake: bool = True, timeout: float = 5.0, expect_features: int | None = 0
) -> Iterator[socket.socket]:
    """A raw connection to the helper at *path*, closed afterwards.

    :param handshake: read the helper's feature word and answer with none (as QEMU 7.2
        does), so the connection is ready for :func:`request`.
    :param timeout: the socket timeout of every later send and receive.
    :param expect_features: the feature word the helper must announce (``None``: any).
    :raises UnexpectedReplyError: the helper announced other features.
    :raises PeerClosedError: the helper closed during the handshake.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        if handshake:
            features = recv_exact(sock, 4)
            if expect_features is not None and features != expect_features.to_bytes(4, "big"):
                raise UnexpectedReplyError(
                    f"the helper announced features {features.hex()}, "
                    f"expected {expect_features:08x}"
                )
            sock.sendall(HANDSHAKE)
        yield sock
    finally:
        sock.close()


def request(
    sock: socket.socket, cdb: bytes, fd: int | None, data: bytes = b""
) -> tuple[int, bytes, bytes]:
    """Send one request (the 16-byte *cdb*, then *data*, with *fd* attached) and read its
    reply.

    :returns: ``(status, sense, data_in)``: the SCSI status, the 96 sense bytes and the
        data the helper sent.
    :raises PeerClosedError: the helper closed before a whole reply.
    """
    if fd is None:
        sock.sendall(cdb + data)
    else:
        socket.send_fds(sock, [cdb + data], [fd])
    head = recv_exact(sock, REPLY_HEADER_SIZE)
    status, size = struct.unpack(">ii", head[:8])
    if size < 0:
        raise UnexpectedReplyError(f"the reply's data length is negative ({size})")
    return status, head[8:], recv_exact(sock, size) if size else b""


def is_closed(sock: socket.socket, timeout: float = 2.0) -> bool:
    """Whether the peer closed *sock* (end of file or reset) within *timeout* seconds; a
    byte that arrives instead counts as not closed (and is consumed)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
