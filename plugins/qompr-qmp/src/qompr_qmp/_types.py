# SPDX-License-Identifier: MIT
"""Values and errors of the QMP plugin; nothing here imports qemu.qmp."""

from __future__ import annotations

from typing import Protocol

import attrs

from qompr.errors import QomprError

__all__ = [
    "MANAGED_ALIAS",
    "PR_MANAGER_STATUS_CHANGED",
    "PrManagerStatus",
    "QmpCommandError",
    "QmpConnectError",
    "QmpDisconnectedError",
    "QmpError",
    "Recovery",
]

#: The id libvirt gives the pr-manager-helper of the helper it runs itself.
MANAGED_ALIAS = "pr-helper0"
#: The QMP event QEMU emits when a pr-manager connects to or loses its helper.
PR_MANAGER_STATUS_CHANGED = "PR_MANAGER_STATUS_CHANGED"


@attrs.frozen
class PrManagerStatus:
    """The data of one ``PR_MANAGER_STATUS_CHANGED`` event.

    :param id: the pr-manager's id (``/objects/<id>``).
    :param connected: whether it now has a connection to its helper.
    """

    id: str
    connected: bool

    def to_json(self) -> dict[str, object]:
        """The event's ``data`` member, as QEMU sends it."""
        return {"id": self.id, "connected": self.connected}


class Recovery(Protocol):
    """Whoever restarts the managed helper; ``qompr.embed.HelperSupervisor`` is one.

    :meth:`QmpBridge.watch` calls :meth:`handle_status_changed` with ``connected=False``
    for the managed alias only, as libvirt's event handler does.
    """

    def handle_status_changed(self, id: str, connected: bool) -> None:
        """React to the managed pr-manager having lost its helper."""


class QmpError(QomprError):
    """Something went wrong talking QMP."""


class QmpConnectError(QmpError):
    """The QMP socket could not be reached, or QEMU did not greet in time."""


class QmpDisconnectedError(QmpError):
    """The QMP connection closed (QEMU quit, or hung up) while a command was pending."""


class QmpCommandError(QmpError):
    """QEMU answered a command with an error.

    :param command: the QMP command, e.g. ``object-add``.
    :param error_class: QEMU's error class, e.g. ``GenericError``.
    :param message: QEMU's ``desc``, the text a user sees.
    """

    def __init__(self, command: str, error_class: str, message: str) -> None:
        super().__init__(message)
        self.command = command
        self.error_class = error_class
