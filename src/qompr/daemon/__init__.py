# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``: the qemu-pr-helper daemon, and its serving core for embedding.

:class:`HelperServer` serves the protocol on a listening socket you provide (tests and
other programs embed it); :func:`qompr.daemon.main.main` is the command.
"""

from qompr.daemon._server import Backend as Backend
from qompr.daemon._server import ConnectionStatistics as ConnectionStatistics
from qompr.daemon._server import HelperServer as HelperServer
from qompr.daemon._server import ManagerBackend as ManagerBackend
from qompr.daemon._server import ServerStatistics as ServerStatistics
from qompr.daemon._server import SgIoBackend as SgIoBackend

__all__ = [
    "Backend",
    "ConnectionStatistics",
    "HelperServer",
    "ManagerBackend",
    "ServerStatistics",
    "SgIoBackend",
]
