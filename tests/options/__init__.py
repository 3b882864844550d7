# SPDX-License-Identifier: MIT
"""Tests of qompr.options, ``-object`` parsing and formatting."""
