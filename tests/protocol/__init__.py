# SPDX-License-Identifier: MIT
"""Tests of qompr.protocol, the sans-IO qemu-pr-helper protocol."""
