# SPDX-License-Identifier: MIT
"""qompr-qmp: a running QEMU's pr-managers over QMP, and libvirt's reaction to them.

:class:`QmpBridge` connects to QEMU's QMP socket with ``qemu.qmp``, lists the pr-managers,
adds and removes ``pr-manager-helper`` objects, streams ``PR_MANAGER_STATUS_CHANGED`` events,
and :meth:`QmpBridge.watch` calls a recovery object (``qompr.embed.HelperSupervisor``) when
the managed helper is lost.  The plugin also adds ``qompr qmp list|watch|add|del``.

``qemu.qmp`` is imported only when :class:`QmpBridge` (or a synchronous helper) is first
used, so loading the plugin costs the ``qompr`` command nothing.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
from typing import Any

from qompr import hookimpl
from qompr_qmp._types import MANAGED_ALIAS
from qompr_qmp._types import PR_MANAGER_STATUS_CHANGED
from qompr_qmp._types import PrManagerStatus
from qompr_qmp._types import QmpCommandError
from qompr_qmp._types import QmpConnectError
from qompr_qmp._types import QmpDisconnectedError
from qompr_qmp._types import QmpError
from qompr_qmp._types import Recovery

if TYPE_CHECKING:
    from qompr_qmp._bridge import QmpBridge as QmpBridge
    from qompr_qmp._bridge import add_pr_helper as add_pr_helper
    from qompr_qmp._bridge import delete_object as delete_object
    from qompr_qmp._bridge import list_pr_managers as list_pr_managers
    from qompr_qmp._bridge import run_watch as run_watch

__all__ = [
    "MANAGED_ALIAS",
    "PR_MANAGER_STATUS_CHANGED",
    "PrManagerStatus",
    "QmpBridge",
    "QmpCommandError",
    "QmpConnectError",
    "QmpDisconnectedError",
    "QmpError",
    "Recovery",
    "add_pr_helper",
    "delete_object",
    "list_pr_managers",
    "qompr_register_commands",
    "run_watch",
]

_LAZY = frozenset({"QmpBridge", "add_pr_helper", "delete_object", "list_pr_managers", "run_watch"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from qompr_qmp import _bridge

        return getattr(_bridge, name)
    raise AttributeError(f"module 'qompr_qmp' has no attribute {name!r}")


@hookimpl
def qompr_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``qompr qmp ...``."""
    from qompr_qmp._cli import register

    register(subparsers)
