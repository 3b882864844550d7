# SPDX-License-Identifier: MIT
"""The errors of the testing kit, under :class:`qompr.errors.QomprError`.

A test that uses the kit fails with one of these when the thing under test misbehaves in a
way the kit notices (a helper that exits instead of listening, a peer that hangs up early):
they name what was expected and what happened, so the failure reads without a debugger.
"""

from __future__ import annotations

from qompr.errors import QomprError

__all__ = [
    "HelperExitedError",
    "PeerClosedError",
    "TestingError",
    "UnexpectedReplyError",
    "UnsupportedCommandError",
    "WaitTimeoutError",
]


class TestingError(QomprError):
    """Root of the errors :mod:`qompr.testing` raises."""

    __test__ = False  # not a test class, whatever pytest's name patterns say


class WaitTimeoutError(TestingError, TimeoutError):
    """Something the kit waits for (a listening socket, a server thread) did not happen in
    time."""


class HelperExitedError(TestingError):
    """A helper process exited while the kit waited for it to listen.

    :param status: its exit status (negative: killed by that signal).
    :param stderr: what it wrote to stderr.
    """

    def __init__(self, message: str, *, status: int, stderr: str = "") -> None:
        super().__init__(message, hint=stderr.strip() or None)
        self.status = status
        self.stderr = stderr


class PeerClosedError(TestingError, EOFError):
    """The peer closed the connection before sending everything the kit reads."""


class UnexpectedReplyError(TestingError):
    """The peer answered, but not with what the protocol step expects (for instance a
    handshake announcing features the caller did not expect)."""


class UnsupportedCommandError(TestingError):
    """A test asked a target for a command it cannot carry (a pr-manager executes PERSISTENT
    RESERVE IN/OUT and answers TEST UNIT READY; nothing else reaches it)."""
