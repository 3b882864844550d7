# SPDX-License-Identifier: MIT
"""Thin adapters that move the protocol core's bytes and fds over unix sockets.

* :mod:`qompr.transport.sync`: blocking ``recvmsg``/``sendmsg`` (SCM_RIGHTS), the reference
  adapter: one connection per thread, as the protocol allows one command per connection;
* :mod:`qompr.transport.asyncio`: the same on a non-blocking socket driven by an asyncio
  loop's readiness callbacks (asyncio transports cannot carry fds).
"""

from qompr.transport.sync import HelperClient as HelperClient
from qompr.transport.sync import RequestNotSentError as RequestNotSentError
from qompr.transport.sync import connect_unix as connect_unix

__all__ = ["HelperClient", "RequestNotSentError", "connect_unix"]
