# SPDX-License-Identifier: MIT
"""The manager types qompr builds in, each with the function importing its class.

Registered by name (:meth:`qompr.qom.TypeRegistry.register_lazy`): a program imports the
module of a built-in manager only when it creates one (``qompr persist --helper`` never loads
the emulated engine, ``qompr-pr-helper --backend pr-manager-emulated`` never loads
libmpathpersist's bindings).  No plugin machinery here: the commands that need no plugin
build their registry from this table alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qompr.managers._base import PRManager

__all__ = ["BUILTIN_TYPES"]


def _direct() -> type[PRManager]:
    from qompr.managers._direct import PRManagerDirect

    return PRManagerDirect


def _helper() -> type[PRManager]:
    from qompr.managers._helper import PRManagerHelper

    return PRManagerHelper


def _emulated() -> type[PRManager]:
    from qompr.managers.emulated import PRManagerEmulated

    return PRManagerEmulated


def _multipath() -> type[PRManager]:
    from qompr.managers.multipath import PRManagerMultipath

    return PRManagerMultipath


#: Type name -> the function importing its class, in the order they are listed.
BUILTIN_TYPES: dict[str, Callable[[], type[PRManager]]] = {
    "pr-manager-helper": _helper,
    "pr-manager-direct": _direct,
    "pr-manager-emulated": _emulated,
    "pr-manager-multipath": _multipath,
}
