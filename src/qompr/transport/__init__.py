# SPDX-License-Identifier: MIT
"""Thin adapters that move the protocol core's bytes and fds over unix sockets.

* :mod:`qompr.transport.unix`: what both ends share: ``sun_path`` handling as QEMU does it,
  one read exactly as the protocol core asks for it (:func:`~qompr.transport.unix.recv_spec`),
  SCM_RIGHTS ancillary data;
* :mod:`qompr.transport.sync`: the blocking client, ``recvmsg``/``sendmsg`` (SCM_RIGHTS), the
  reference adapter: one connection per thread, as the protocol allows one command per
  connection;
* :mod:`qompr.transport.aio`: the same client on a non-blocking socket driven by an asyncio
  loop's readiness callbacks (asyncio transports cannot carry fds).

The daemon's server side lives in :mod:`qompr.daemon`; it uses :mod:`~qompr.transport.unix`
only (the client modules load on first use of their names here).
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from qompr.transport.sync import HelperClient as HelperClient
    from qompr.transport.sync import RequestNotSentError as RequestNotSentError
    from qompr.transport.sync import connect_unix as connect_unix

__all__ = ["HelperClient", "RequestNotSentError", "connect_unix"]


def __getattr__(name: str) -> _Any:
    # The client loads on first use: the daemon imports transport.unix only.
    if name not in __all__:
        raise AttributeError(f"module 'qompr.transport' has no attribute '{name}'")
    value = vars(_importlib.import_module("qompr.transport.sync"))[name]
    globals()[name] = value
    return value
