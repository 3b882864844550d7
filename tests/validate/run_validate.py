# SPDX-License-Identifier: MIT
"""``qompr validate`` with the test-only managers of faulty.py registered (for tests that need
a process of its own: signals)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import qompr
from qompr.cli import validate

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(importlib.import_module("faulty"))
    sys.exit(validate.run(sys.argv[1:], plugin_manager=pm))
