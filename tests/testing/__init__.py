# SPDX-License-Identifier: MIT
"""Tests of qompr.testing, the public testing kit."""
