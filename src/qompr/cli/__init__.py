# SPDX-License-Identifier: MIT
"""The ``qompr`` command line."""

from qompr.cli.main import main as main

__all__ = ["main"]
