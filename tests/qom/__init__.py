# SPDX-License-Identifier: MIT
"""Tests of qompr.qom, the object model."""
