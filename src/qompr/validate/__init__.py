# SPDX-License-Identifier: MIT
"""Will a guest cluster's persistent reservations work on this path?  (``qompr validate``)

The engine behind ``qompr validate``, for any program that sets up shared disks (a VM
manager checking a LUN before it hands it to a Windows or Pacemaker cluster)::

    import qompr
    from qompr.validate import Validator, device_node

    tree = qompr.new_tree(load_entrypoints=False)
    nodes = [device_node(tree, name, path, timeout=30)
             for name, path in (("a", "/dev/sdb"), ("b", "/dev/sdc"))]
    try:
        report = Validator(nodes, "fence_scsi").run()
    finally:
        for node in nodes:
            node.close()
    print(report.render())          # or report.to_json(); report.exit_status

Layout (the modules are private; every public name is re-exported here):

* ``_model``: :class:`Status`, :class:`CheckResult`, :class:`Report` (table and JSON);
* ``_profiles``: :data:`PROFILES` (``wsfc``, ``fence_scsi``, ``lvmpersist``);
* ``_nodes``: :class:`Node` and how each reaches the LU (device, multipath map, helper
  socket from an agent process, any manager with a named I_T nexus);
* ``_agent``: the agent process of a helper node;
* ``_suite``: :class:`Validator`, the sequence and its checks;
* ``_restore``: putting the LU back as found;
* ``_multipath``, ``_text``: multipath questions, and the report's wording.

Layering: above the managers (it drives them through :class:`~qompr.managers.PRManager`
only), below the command line.
"""

from typing import TYPE_CHECKING
from typing import Any

from qompr._lazy import load as _load

if TYPE_CHECKING:
    from qompr.validate._model import CHECKS as CHECKS
    from qompr.validate._model import CheckResult as CheckResult
    from qompr.validate._model import CommandRecord as CommandRecord
    from qompr.validate._model import ExitStatus as ExitStatus
    from qompr.validate._model import NodeInfo as NodeInfo
    from qompr.validate._model import Report as Report
    from qompr.validate._model import Status as Status
    from qompr.validate._multipath import DEFAULT_MULTIPATH_CONF as DEFAULT_MULTIPATH_CONF
    from qompr.validate._nodes import AgentNode as AgentNode
    from qompr.validate._nodes import Answer as Answer
    from qompr.validate._nodes import ManagerNode as ManagerNode
    from qompr.validate._nodes import Node as Node
    from qompr.validate._nodes import PathKind as PathKind
    from qompr.validate._nodes import device_node as device_node
    from qompr.validate._nodes import helper_node as helper_node
    from qompr.validate._nodes import helper_nodes as helper_nodes
    from qompr.validate._nodes import manager_node as manager_node
    from qompr.validate._profiles import PROFILES as PROFILES
    from qompr.validate._profiles import Profile as Profile
    from qompr.validate._session import new_key as new_key
    from qompr.validate._suite import SKIPPABLE as SKIPPABLE
    from qompr.validate._suite import Validator as Validator

__all__ = [
    "CHECKS",
    "DEFAULT_MULTIPATH_CONF",
    "PROFILES",
    "SKIPPABLE",
    "AgentNode",
    "Answer",
    "CheckResult",
    "CommandRecord",
    "ExitStatus",
    "ManagerNode",
    "Node",
    "NodeInfo",
    "PathKind",
    "Profile",
    "Report",
    "Status",
    "Validator",
    "device_node",
    "helper_node",
    "helper_nodes",
    "manager_node",
    "new_key",
]

# Loaded on first use: the agent process of a helper node (``qompr.validate._agent``) must not
# pay for the suite.
_LAZY = {
    "CHECKS": "qompr.validate._model",
    "CheckResult": "qompr.validate._model",
    "CommandRecord": "qompr.validate._model",
    "ExitStatus": "qompr.validate._model",
    "NodeInfo": "qompr.validate._model",
    "Report": "qompr.validate._model",
    "Status": "qompr.validate._model",
    "DEFAULT_MULTIPATH_CONF": "qompr.validate._multipath",
    "AgentNode": "qompr.validate._nodes",
    "Answer": "qompr.validate._nodes",
    "ManagerNode": "qompr.validate._nodes",
    "Node": "qompr.validate._nodes",
    "PathKind": "qompr.validate._nodes",
    "device_node": "qompr.validate._nodes",
    "helper_node": "qompr.validate._nodes",
    "helper_nodes": "qompr.validate._nodes",
    "manager_node": "qompr.validate._nodes",
    "PROFILES": "qompr.validate._profiles",
    "Profile": "qompr.validate._profiles",
    "new_key": "qompr.validate._session",
    "SKIPPABLE": "qompr.validate._suite",
    "Validator": "qompr.validate._suite",
}


def __getattr__(name: str) -> Any:
    return _load(__name__, _LAZY, name)
