# SPDX-License-Identifier: MIT
"""The VM test bed (real LIO SCSI targets under QEMU) and its smoke tests (docs/vm-testbed.md)."""
