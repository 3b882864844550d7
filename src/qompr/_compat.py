# SPDX-License-Identifier: MIT
"""What differs between the Python versions qompr supports (3.11 to 3.13).

``override`` (PEP 698) marks a method that overrides one of a base class; ``mypy --strict``
with ``explicit-override`` makes every override say so.  Python 3.12 has it in ``typing``.  On
3.11 the type checker reads typing-extensions' declaration, while at run time a decorator of
the same behaviour stands in: importing typing-extensions would add about 20 ms to the start
of every ``qompr`` and ``qompr-pr-helper`` process for a marker.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

__all__ = ["override"]

if sys.version_info >= (3, 12):
    from typing import override
elif TYPE_CHECKING:
    from typing_extensions import override
else:
    _F = TypeVar("_F", bound=Callable[..., Any])

    def override(method: _F, /) -> _F:
        """PEP 698's run-time behaviour: set ``__override__`` where the object allows it."""
        with contextlib.suppress(AttributeError, TypeError):
            method.__override__ = True
        return method
