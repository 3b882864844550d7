# SPDX-License-Identifier: MIT
"""qompr: SCSI persistent-reservation managers, modelled on QEMU's ``pr-manager`` objects.

Layers, each importing only those before it::

    qompr.qom        object model: types, properties, /objects (knows no SCSI)
    qompr.options    -object strings (QemuOpts, keyval, JSON) to objects and back
    qompr.scsi       SCSI values and codecs (no I/O)
    qompr.managers   pr-manager and the built-in manager types
    qompr.cli        the ``qompr`` command

Start with :func:`qompr.new_tree`.
"""

from typing import TYPE_CHECKING
from typing import Any

from qompr.errors import QomprError as QomprError

if TYPE_CHECKING:
    from qompr.hookspecs import hookimpl as hookimpl
    from qompr.plugins import get_plugin_manager as get_plugin_manager
    from qompr.plugins import new_tree as new_tree

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The plugin machinery (pluggy) is imported on first use, not with every ``qompr.*``
    # module: ``qompr persist`` on a device needs none of it (start-up time).
    if name == "hookimpl":
        from qompr.hookspecs import hookimpl

        return hookimpl
    if name == "get_plugin_manager":
        from qompr.plugins import get_plugin_manager

        return get_plugin_manager
    if name == "new_tree":
        from qompr.plugins import new_tree

        return new_tree
    raise AttributeError(f"module 'qompr' has no attribute {name!r}")


__all__ = ["QomprError", "__version__", "get_plugin_manager", "hookimpl", "new_tree"]
