# SPDX-License-Identifier: MIT
from __future__ import annotations

import pytest

from .helpers import FdLedger


@pytest.fixture
def ledger() -> FdLedger:
    """Fake fds and a record of the ones the connection closes."""
    return FdLedger()
