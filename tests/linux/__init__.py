# SPDX-License-Identifier: MIT
"""Tests of qompr.linux: SG_IO, device-mapper, capabilities, systemd (ctypes)."""
