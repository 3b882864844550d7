# SPDX-License-Identifier: MIT
"""Persistent-reservation managers: the abstract ``pr-manager`` type and the built-ins.

The abstract type and its contract load with this package; :class:`DelegatingPRManager`
and each built-in manager load on first use (``from qompr.managers import PRManagerDirect``),
so a program pays only for the managers it touches (a daemon serving SG_IO never imports the
emulated engine or libmpathpersist's bindings, ``qompr persist`` no wrapping manager).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from qompr._lazy import load as _load
from qompr.managers import _base
from qompr.managers._base import PR_IN as PR_IN
from qompr.managers._base import PR_OUT as PR_OUT
from qompr.managers._base import TEST_UNIT_READY_CDB as TEST_UNIT_READY_CDB
from qompr.managers._base import ClientIdentity as ClientIdentity
from qompr.managers._base import PRManager as PRManager
from qompr.managers._base import pr_manager_lookup as pr_manager_lookup
from qompr.managers._base import query_pr_managers as query_pr_managers

if TYPE_CHECKING:
    from qompr.managers._delegating import DelegatingPRManager as DelegatingPRManager
    from qompr.managers._direct import PRManagerDirect as PRManagerDirect
    from qompr.managers._handover import HandoverError as HandoverError
    from qompr.managers._handover import HandoverReason as HandoverReason
    from qompr.managers._handover import HandoverResult as HandoverResult
    from qompr.managers._handover import PRPath as PRPath
    from qompr.managers._handover import take_over as take_over
    from qompr.managers._helper import PRManagerHelper as PRManagerHelper
    from qompr.managers.emulated import PRManagerEmulated as PRManagerEmulated
    from qompr.managers.multipath import PRManagerMultipath as PRManagerMultipath

# The contract's names are _base's own list; this package adds the managers and handover.
__all__ = [
    "DelegatingPRManager",
    "HandoverError",
    "HandoverReason",
    "HandoverResult",
    "PRManagerDirect",
    "PRManagerEmulated",
    "PRManagerHelper",
    "PRManagerMultipath",
    "PRPath",
    "take_over",
]
__all__ += _base.__all__

# The built-in managers, by the module that defines each (loaded on first access).
_LAZY = {
    # The base of wrapping managers (none is built in): for plugins and the daemon's wrappers.
    "DelegatingPRManager": "qompr.managers._delegating",
    "PRManagerDirect": "qompr.managers._direct",
    "PRManagerHelper": "qompr.managers._helper",
    "PRManagerEmulated": "qompr.managers.emulated",
    "PRManagerMultipath": "qompr.managers.multipath",
    # Live-migration handover (docs/migration.md).
    "HandoverError": "qompr.managers._handover",
    "HandoverReason": "qompr.managers._handover",
    "HandoverResult": "qompr.managers._handover",
    "PRPath": "qompr.managers._handover",
    "take_over": "qompr.managers._handover",
}


def __getattr__(name: str) -> Any:
    return _load(__name__, _LAZY, name)
