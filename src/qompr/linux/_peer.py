# SPDX-License-Identifier: MIT
"""``SO_PEERCRED`` of a unix socket (re-exported by :mod:`qompr.linux`, which loads this
module on first use: a program issuing SG_IO builds no credentials class and imports no
``socket``)."""

from __future__ import annotations

import socket
import struct

import attrs

__all__ = ["PeerCredentials", "peer_credentials"]

_UCRED = struct.Struct("3i")


@attrs.frozen
class PeerCredentials:
    """The process at the other end of a unix socket, as it was when it connected.

    :param pid: its process id.
    :param uid: its effective user id.
    :param gid: its effective group id.
    """

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """``getsockopt(SO_PEERCRED)``.

    :raises OSError: *sock* is not a connected unix socket.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid, uid, gid)
