# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``: the qemu-pr-helper daemon, and its serving core for embedding.

:class:`HelperServer` serves the protocol on a listening socket you provide (tests and
other programs embed it); :func:`qompr.daemon.main.main` is the command.
"""

from qompr.daemon._backends import Backend as Backend
from qompr.daemon._backends import DefaultBackend as DefaultBackend
from qompr.daemon._backends import ManagerBackend as ManagerBackend
from qompr.daemon._backends import SgIoBackend as SgIoBackend
from qompr.daemon._server import ConnectionStatistics as ConnectionStatistics
from qompr.daemon._server import HelperServer as HelperServer
from qompr.daemon._server import ServerStatistics as ServerStatistics

__all__ = [
    "Backend",
    "ConnectionStatistics",
    "DefaultBackend",
    "HelperServer",
    "ManagerBackend",
    "ServerStatistics",
    "SgIoBackend",
]
