# SPDX-License-Identifier: MIT
"""Linux-only pieces, through the standard library and ctypes (no new dependency).

* :mod:`qompr.linux.sgio`: the ``SG_IO`` ioctl (its SCSI meaning is the managers':
  :mod:`qompr.managers._sgio`);
* :mod:`qompr.linux.caps`: capability and id dropping as libcap-ng's ``capng_change_id``;
* :mod:`qompr.linux.systemd`: socket activation and ``sd_notify``;
* :mod:`qompr.linux.devmapper`: is an fd a dm-multipath map (qemu-pr-helper's ``is_mpath``);
* :func:`peer_credentials`: ``SO_PEERCRED`` of a unix socket.

Importing a submodule runs this package first: it loads nothing itself, and the peer
credentials (``socket`` and an attrs class) on first use (PEP 562), so ``qompr persist`` on a
device pays only for SG_IO.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from qompr._lazy import load as _load

if _TYPE_CHECKING:
    from qompr.linux._peer import PeerCredentials as PeerCredentials
    from qompr.linux._peer import peer_credentials as peer_credentials

__all__ = ["PeerCredentials", "peer_credentials"]

_LAZY = {
    "PeerCredentials": "qompr.linux._peer",
    "peer_credentials": "qompr.linux._peer",
}


def __getattr__(name: str) -> _Any:
    return _load(__name__, _LAZY, name)


def __dir__() -> list[str]:
    return sorted(__all__)
