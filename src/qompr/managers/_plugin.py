# SPDX-License-Identifier: MIT
"""The built-in manager types, registered as an ordinary (default) plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qompr.hookspecs import hookimpl
from qompr.managers._base import PRManager
from qompr.managers._direct import PRManagerDirect
from qompr.managers._helper import PRManagerHelper
from qompr.managers.emulated import PRManagerEmulated
from qompr.managers.multipath import PRManagerMultipath
from qompr.qom import Object


@hookimpl
def qompr_register_types(register: Callable[[type[Object]], Any]) -> None:
    register(PRManager)
    register(PRManagerHelper)
    register(PRManagerDirect)
    register(PRManagerEmulated)
    register(PRManagerMultipath)
