# SPDX-License-Identifier: MIT
"""Fixtures every test directory shares, and the suite's Hypothesis profile.  Helpers that
are not fixtures are ordinary modules in ``tests/_support`` (import them as
``tests._support.X``)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck
from hypothesis import settings

import qompr
from qompr.qom import ObjectTree

# No per-example deadline and no "too slow" health check: both measure time, and on a busy
# shared machine (the 2-core CI box runs several suites at once) a 0.4 ms example can take
# 300 ms.  Behaviour is what the suite asserts; timing targets live in bench/.
settings.register_profile("qompr", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qompr")


@pytest.fixture
def tree() -> ObjectTree:
    """A tree with qompr's built-in types and no third-party plugins."""
    return qompr.new_tree(load_entrypoints=False)
