# SPDX-License-Identifier: MIT
"""Tests of the example plugin packages under ``plugins/``."""
