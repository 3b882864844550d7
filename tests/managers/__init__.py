# SPDX-License-Identifier: MIT
"""Tests of qompr.managers: ``pr-manager`` and the built-in managers."""
