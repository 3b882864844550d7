# SPDX-License-Identifier: MIT
"""The two fixtures every VM test module has: boot once, then read the guest's record.

A module's guest program (``guest_main`` in the module, run by ``$VMBED_PYTHON`` in the
guest) writes a JSON record into ``$VMBED_RESULT_DIR`` and sets ``"done": true`` as its last
act; the host-side tests assert on that record.
"""

from __future__ import annotations

from typing import Any

import pytest

from .vmbed import VMResult
from .vmbed import run_in_vm

__all__ = ["boot", "load_record"]


def boot(script: str, record: str, **options: Any) -> VMResult:
    """:func:`run_in_vm` *script*; fail the tests (with the logs) unless it exited 0 and left
    the result file *record*."""
    result = run_in_vm(script, **options)
    if result.exit_status != 0 or record not in result.files:
        pytest.fail(f"the guest program failed:\n{result.describe()}", pytrace=False)
    return result


def load_record(result: VMResult, record: str) -> dict[str, Any]:
    """The JSON record *record* of a finished guest program (it must say ``done``)."""
    seen: dict[str, Any] = result.json(record)
    assert seen.get("done"), f"the guest program stopped early:\n{result.describe()}"
    return seen
