# SPDX-License-Identifier: MIT
"""Shared bits for the protocol tests: a fake fd table (CDB builders: qompr.testing)."""

from __future__ import annotations

import attrs


@attrs.define
class FdLedger:
    """Hands out fake descriptor numbers and records which the connection closes."""

    next_fd: int = 1000
    closed: list[int] = attrs.Factory(list)

    def new(self) -> int:
        self.next_fd += 1
        return self.next_fd

    def close(self, fd: int) -> None:
        assert fd not in self.closed, f"fd {fd} closed twice"
        self.closed.append(fd)
