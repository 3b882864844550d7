# SPDX-License-Identifier: MIT
"""The corpus recorded from real QEMU (``*.json``), its recorders and its replays."""
