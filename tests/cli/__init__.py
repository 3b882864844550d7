# SPDX-License-Identifier: MIT
"""Tests of qompr.cli, the ``qompr`` command."""
