# SPDX-License-Identifier: MIT
"""The built-in manager types, registered as an ordinary (default) plugin.

They are registered by name (``register_lazy``): each manager's module is imported when a
program first looks its type up, not when the registry is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qompr.hookspecs import hookimpl
from qompr.managers._base import PRManager
from qompr.managers._builtin import BUILTIN_TYPES
from qompr.qom import Object
from qompr.qom import TypeLoader


@hookimpl
def qompr_register_types(
    register: Callable[[type[Object]], Any], register_lazy: Callable[[str, TypeLoader], Any]
) -> None:
    register(PRManager)
    for name, load in BUILTIN_TYPES.items():
        register_lazy(name, load)
