# SPDX-License-Identifier: MIT
"""Tests against real programs: QEMU, qemu-pr-helper, sg_persist (marker ``interop``)."""
