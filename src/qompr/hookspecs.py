# SPDX-License-Identifier: MIT
"""The plugin contract: every hook qompr calls, in one place (as in pluggy's eggsample).

A plugin is any module or object with functions marked ``@qompr.hookimpl`` whose names match
the specifications below.  Third-party packages announce a plugin in the entry-point group
``qompr``; qompr's own managers are registered the same way, as default plugins.  Each hook is
documented in ``docs/plugins/hooks.md`` (a test checks that).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

import pluggy

if TYPE_CHECKING:
    import qompr.managers
    from qompr.managers import PRManager
    from qompr.qom import Object
    from qompr.scsi import ScsiResult

__all__ = ["hookimpl", "hookspec"]

#: Marks a hook specification (used only in this module).
hookspec = pluggy.HookspecMarker("qompr")
#: Marks a hook implementation in a plugin.
hookimpl = pluggy.HookimplMarker("qompr")


@hookspec
def qompr_register_types(
    register: Callable[[type[Object]], Any],
    register_lazy: Callable[[str, Callable[[], type[Object]]], Any],
) -> None:
    """Register QOM types: call ``register(cls)`` for each class declared with
    ``qom_type=...``.  Order does not matter; parents are registered before children.

    :param register: adds one class to the type registry being built.
    :param register_lazy: ``register_lazy(name, load)`` adds type *name* by name only;
        ``load()`` imports and returns its class when a program first looks the type up
        (so a plugin's heavy module loads only for the programs that use the type).
    """


@hookspec
def qompr_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add subcommands to the ``qompr`` command line.

    :param subparsers: from ``ArgumentParser.add_subparsers``; call ``add_parser(...)`` and
        ``set_defaults(func=callable)`` where *callable* takes the parsed
        :class:`argparse.Namespace` and returns the exit status.
    """


@hookspec
def qompr_command_executed(manager: PRManager, cdb: bytes, result: ScsiResult) -> None:
    """Called after a PR manager executed a PERSISTENT RESERVE IN/OUT command.

    Runs in the thread that executed it, which may be ``qompr-pr-helper``'s event loop (a
    manager whose ``cannot_block(fd, cdb)`` is true): never block.

    :param manager: the manager (its ``id`` names it in ``/objects``).
    :param cdb: the command descriptor block as executed.
    :param result: status, sense and data-in of the command.
    """


@hookspec
def qompr_pr_manager_status_changed(manager: PRManager, id: str, connected: bool) -> None:
    """A manager connected to or lost its backend: QEMU's ``PR_MANAGER_STATUS_CHANGED`` event.

    :param manager: the manager object.
    :param id: its id, as the event's ``id`` member.
    :param connected: the event's ``connected`` member.
    """


@hookspec
def qompr_object_created(obj: Object) -> None:
    """A user-creatable object was created and completed (``object-add`` succeeded).

    :param obj: the new object, already at ``/objects/<id>``.
    """


@hookspec
def qompr_object_deleted(obj: Object, id: str) -> None:
    """A user-creatable object was removed by ``object-del``.

    :param obj: the object, already finalized.
    :param id: the id it had.
    """


@hookspec(firstresult=True)
def qompr_emulated_store(
    uri: str, options: qompr.managers.emulated.StoreOptions
) -> qompr.managers.emulated.Store | None:
    """Open the state store of ``pr-manager-emulated,state=URI`` for a URI scheme qompr
    does not serve itself (qompr serves file paths and ``postgresql://``).

    Return ``None`` for a scheme you do not serve; the first store returned is used.

    :param uri: the ``state`` property, ``SCHEME://...``.
    :param options: what the manager's other properties ask (timeout, power_on...).
    :returns: an object implementing :class:`qompr.managers.emulated.Store`.
    """
