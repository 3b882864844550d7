# SPDX-License-Identifier: MIT
"""Fixtures every test directory shares.  Helpers that are not fixtures are ordinary modules
in ``tests/_support`` (import them as ``tests._support.X``)."""

from __future__ import annotations

import pytest

import qompr
from qompr.qom import ObjectTree


@pytest.fixture
def tree() -> ObjectTree:
    """A tree with qompr's built-in types and no third-party plugins."""
    return qompr.new_tree(load_entrypoints=False)
