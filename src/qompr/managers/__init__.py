# SPDX-License-Identifier: MIT
"""Persistent-reservation managers: the abstract ``pr-manager`` type and the built-ins."""

from qompr.managers._base import PR_IN as PR_IN
from qompr.managers._base import PR_OUT as PR_OUT
from qompr.managers._base import PRManager as PRManager
from qompr.managers._base import pr_manager_lookup as pr_manager_lookup
from qompr.managers._base import query_pr_managers as query_pr_managers
from qompr.managers._direct import PRManagerDirect as PRManagerDirect
from qompr.managers._helper import PRManagerHelper as PRManagerHelper
from qompr.managers.emulated import PRManagerEmulated as PRManagerEmulated
from qompr.managers.multipath import PRManagerMultipath as PRManagerMultipath

__all__ = [
    "PR_IN",
    "PR_OUT",
    "PRManager",
    "PRManagerDirect",
    "PRManagerEmulated",
    "PRManagerHelper",
    "PRManagerMultipath",
    "pr_manager_lookup",
    "query_pr_managers",
]
