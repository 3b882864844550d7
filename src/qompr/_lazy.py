# SPDX-License-Identifier: MIT
"""Names a package loads from its modules on first use (PEP 562), so that a program pays
only for the modules it touches (``qompr-pr-helper`` serving SG_IO never builds the PR IN
data classes, nor imports the emulated engine).

A package keeps a table of its lazy names and the module of each, and its ``__getattr__``
hands over to :func:`load`::

    def __getattr__(name: str) -> Any:
        return load(__name__, _LAZY, name)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import logging

__all__ = ["load", "loaded_logger"]


def load(package: str, table: Mapping[str, str], name: str) -> Any:
    """The value of *name* in the module *table* names for it, kept in *package* from then on.

    :raises AttributeError: *name* is not in *table*, as for any missing attribute.
    """
    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = vars(importlib.import_module(module))[name]  # defined there, not found by duck typing
    setattr(sys.modules[package], name, value)  # found without __getattr__ next time
    return value


def loaded_logger(name: str) -> logging.Logger | None:
    """The logger *name* if :mod:`logging` is imported, else ``None``.

    For records below WARNING on a start-up path: until something imports logging, nothing can
    have configured a level or a handler, so such a record would be dropped (logging's
    last-resort handler prints WARNING and above).  Warnings and errors use a logger as usual.
    """
    logging = sys.modules.get("logging")
    return None if logging is None else logging.getLogger(name)
