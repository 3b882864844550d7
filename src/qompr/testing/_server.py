# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``'s serving core on a thread of the test process: no subprocess to
start, and the manager it serves stays inspectable from the test."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
from typing import Any

from qompr.daemon import HelperServer
from qompr.managers import PRManager
from qompr.testing._errors import WaitTimeoutError
from qompr.testing._wire import wait_for_socket

__all__ = ["InProcessServer"]


class InProcessServer:
    """A :class:`~qompr.daemon.HelperServer` on a socket in a new temporary directory,
    served by a thread of this process.  Use it as a context manager: it listens on entry
    and stops on exit.

    :param kwargs: passed to :class:`~qompr.daemon.HelperServer` (``backend=``, peer
        allowlists...); without a backend it serves SG_IO, as ``qompr-pr-helper`` does.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="qompr-srv-")
        #: The socket to connect to.
        self.path = os.path.join(self._tmp.name, "helper.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(128)
        #: The server (its statistics, its backend).
        self.server = HelperServer(self.listener, **kwargs)
        self._thread = threading.Thread(target=self._run, name="qompr-test-server", daemon=True)
        self._error: BaseException | None = None

    @classmethod
    def serving(cls, manager: PRManager, **kwargs: Any) -> InProcessServer:
        """A server whose commands *manager* executes (``--backend`` of the daemon); each
        client is the initiator the manager's ``nexus_for_client`` names."""
        return cls(backend=manager, **kwargs)

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # handed to the test by stop()
            self._error = exc

    def __enter__(self) -> InProcessServer:
        self._thread.start()
        wait_for_socket(self.path)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread.

        :raises WaitTimeoutError: the server did not stop within *timeout* seconds.
        :raises BaseException: whatever made the server's loop fail.
        """
        self.server.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise WaitTimeoutError(f"the in-process server did not stop in {timeout:g} s")
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __exit__(self, *exc: object) -> None:
        try:
            if self._thread.is_alive():
                self.stop()
        finally:
            self.listener.close()
            self._tmp.cleanup()
