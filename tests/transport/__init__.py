# SPDX-License-Identifier: MIT
"""Tests of qompr.transport, the helper protocol's I/O adapters."""
