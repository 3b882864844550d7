# SPDX-License-Identifier: MIT
"""Tests of qompr.embed: managed helpers, QEMU arguments, systemd units."""
