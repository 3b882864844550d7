# SPDX-License-Identifier: MIT
"""Tests of qompr.managers.emulated, the software SPC-4 engine, and its scenarios."""
