# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``: the qemu-pr-helper daemon, and its serving core for embedding.

:class:`HelperServer` serves the protocol on a listening socket you provide (tests and
other programs embed it) with any :class:`~qompr.managers.PRManager` as its executor;
:func:`qompr.daemon.main.main` is the command.  Inside:

=====================  ==================================================================
``main``               the command: options, executor, start-up, serve, clean up
``_options``           the command line, parsed as qemu-pr-helper parses it
``_startup``           listen, daemonise, pid file, privilege drop, pre-fork, stop signals
``_server``            the serving core (one event loop, worker threads for slow commands)
``_loop``              the event loop (``selectors``, timers, thread wake-ups, signals)
``_stats``             the statistics values
``_backends``          qemu-pr-helper's own executors (SG_IO, multipath or SG_IO)
``_logging``           the log, as text or JSON
=====================  ==================================================================
"""

from qompr.daemon._backends import PRHelperDefault as PRHelperDefault
from qompr.daemon._backends import PRHelperSgIo as PRHelperSgIo
from qompr.daemon._backends import default_executor as default_executor
from qompr.daemon._backends import executor_tree as executor_tree
from qompr.daemon._backends import sgio_executor as sgio_executor
from qompr.daemon._server import HelperServer as HelperServer
from qompr.daemon._stats import ConnectionStatistics as ConnectionStatistics
from qompr.daemon._stats import ServerStatistics as ServerStatistics

__all__ = [
    "ConnectionStatistics",
    "HelperServer",
    "PRHelperDefault",
    "PRHelperSgIo",
    "ServerStatistics",
    "default_executor",
    "executor_tree",
    "sgio_executor",
]
