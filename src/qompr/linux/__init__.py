# SPDX-License-Identifier: MIT
"""Linux-only pieces, through the standard library and ctypes (no new dependency).

* :mod:`qompr.linux.sgio`: the ``SG_IO`` ioctl (its SCSI meaning is the managers':
  :mod:`qompr.managers._sgio`);
* :mod:`qompr.linux.caps`: capability and id dropping as libcap-ng's ``capng_change_id``;
* :mod:`qompr.linux.systemd`: socket activation and ``sd_notify``;
* :mod:`qompr.linux.devmapper`: is an fd a dm-multipath map (qemu-pr-helper's ``is_mpath``);
* :func:`peer_credentials`: ``SO_PEERCRED`` of a unix socket.
"""

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
