# SPDX-License-Identifier: MIT
"""qompr: SCSI persistent-reservation managers, modelled on QEMU's ``pr-manager`` objects.

Layers, top first; each imports only the layers below it (``a | b``: side by side, neither
importing the other).  ``[tool.importlinter]`` in pyproject.toml enforces this picture::

    qompr.__main__                 ``python -m qompr``
    qompr.cli | qompr.testing      the ``qompr`` command | the testing kit for plugin writers
    qompr.daemon | qompr.validate | qompr.embed
                                   ``qompr-pr-helper`` | ``qompr validate``'s suite | managed
                                   helpers and QEMU arguments
    qompr.plugins                  the plugin manager: types from built-ins and entry points
    qompr.managers                 pr-manager and the built-in manager types (each its own:
                                   emulated, multipath, direct, helper, delegating)
    qompr.hookspecs                the plugin contract (hook specifications, ``hookimpl``)
    qompr.transport                the helper protocol's socket adapters (blocking, asyncio)
    qompr.protocol | qompr.linux   the qemu-pr-helper protocol (sans-IO) | SG_IO, capabilities,
                                   systemd, device-mapper (ctypes)
    qompr.scsi                     SCSI values and codecs (no I/O)
    qompr.options                  -object strings (QemuOpts, keyval, JSON) to objects and back
    qompr.qom                      object model: types, properties, /objects (knows no SCSI)
    qompr.errors | qompr._compat | qompr._getopt | qompr._lazy
                                   the exception root | Python-version shims | glibc getopt_long
                                   | names a package loads on first use

The hook specifications name manager types in their signatures for the type checker only.
``qompr`` itself (:func:`new_tree`, :func:`get_plugin_manager`, ``hookimpl``) is a facade
that imports ``qompr.plugins`` on first use.

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
