# SPDX-License-Identifier: MIT
"""qompr's testing kit: what a test of a pr-manager, a plugin or a helper needs.

Public and documented (``docs/testing.md``); nothing else in qompr imports it.  Like
``trio.testing``, it is part of the library so that plugin writers test their managers with
the tools qompr's own suite uses.

Multi-initiator harness
    :class:`ManagerTarget` (one logical unit, several named initiators and target ports),
    :func:`iscsi_nexus`, :data:`MANAGER_OPCODES`.
Conformance
    :mod:`qompr.testing.scenario` (the scenarios every manager answering like LIO passes,
    their format and runner) and the pytest plugin :mod:`qompr.testing.conformance`.
Concurrency
    :mod:`qompr.testing.checker`: whether a history of commands from many clients and
    daemons is explained by one serial order per logical unit (the stores' guarantee).
Commands
    :func:`pr_in`, :func:`pr_out` (raw 16-byte CDBs as the helper protocol carries them),
    :func:`pr_out_command` (a PR OUT CDB with its parameter list).
Fake devices
    :class:`FdFactory` (fds of every kind, :data:`FD_KINDS`), :func:`loop_device`,
    :func:`open_fd_count` (leak checks).
Helpers and sockets
    :class:`InProcessServer` (``qompr-pr-helper``'s core on a thread),
    :class:`HelperProcess` (a helper program, started and waited for; :data:`QOMPR_PR_HELPER`),
    :func:`wait_for_socket`, and a raw client independent of :mod:`qompr.protocol`:
    :func:`connected`, :func:`request`, :func:`recv_exact`, :func:`is_closed`,
    :data:`HANDSHAKE`.
A real PostgreSQL
    :mod:`qompr.testing.postgres` (imported on its own): a throw-away cluster for stores'
    tests, :class:`~qompr.testing.postgres.PostgresCluster`.
Errors
    :class:`TestingError` (a :class:`~qompr.errors.QomprError`) and its subclasses.
"""

from qompr.testing._commands import HELPER_CDB_SIZE as HELPER_CDB_SIZE
from qompr.testing._commands import pr_in as pr_in
from qompr.testing._commands import pr_out as pr_out
from qompr.testing._commands import pr_out_command as pr_out_command
from qompr.testing._errors import HelperExitedError as HelperExitedError
from qompr.testing._errors import PeerClosedError as PeerClosedError
from qompr.testing._errors import TestingError as TestingError
from qompr.testing._errors import UnexpectedReplyError as UnexpectedReplyError
from qompr.testing._errors import UnsupportedCommandError as UnsupportedCommandError
from qompr.testing._errors import WaitTimeoutError as WaitTimeoutError
from qompr.testing._fds import FD_KINDS as FD_KINDS
from qompr.testing._fds import FdFactory as FdFactory
from qompr.testing._fds import loop_device as loop_device
from qompr.testing._fds import open_fd_count as open_fd_count
from qompr.testing._process import QOMPR_PR_HELPER as QOMPR_PR_HELPER
from qompr.testing._process import HelperProcess as HelperProcess
from qompr.testing._server import InProcessServer as InProcessServer
from qompr.testing._target import MANAGER_OPCODES as MANAGER_OPCODES
from qompr.testing._target import ManagerTarget as ManagerTarget
from qompr.testing._target import iscsi_nexus as iscsi_nexus
from qompr.testing._wire import HANDSHAKE as HANDSHAKE
from qompr.testing._wire import REPLY_HEADER_SIZE as REPLY_HEADER_SIZE
from qompr.testing._wire import connected as connected
from qompr.testing._wire import is_closed as is_closed
from qompr.testing._wire import recv_exact as recv_exact
from qompr.testing._wire import request as request
from qompr.testing._wire import wait_for_socket as wait_for_socket

__all__ = [
    "FD_KINDS",
    "HANDSHAKE",
    "HELPER_CDB_SIZE",
    "MANAGER_OPCODES",
    "QOMPR_PR_HELPER",
    "REPLY_HEADER_SIZE",
    "FdFactory",
    "HelperExitedError",
    "HelperProcess",
    "InProcessServer",
    "ManagerTarget",
    "PeerClosedError",
    "TestingError",
    "UnexpectedReplyError",
    "UnsupportedCommandError",
    "WaitTimeoutError",
    "connected",
    "is_closed",
    "iscsi_nexus",
    "loop_device",
    "open_fd_count",
    "pr_in",
    "pr_out",
    "pr_out_command",
    "recv_exact",
    "request",
    "wait_for_socket",
]
