# SPDX-License-Identifier: MIT
"""Tests of qompr.daemon, `qompr-pr-helper`."""
