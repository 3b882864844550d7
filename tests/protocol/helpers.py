# SPDX-License-Identifier: MIT
"""Shared bits for the protocol tests: CDB builders and a fake fd table."""

from __future__ import annotations

import attrs


def pr_in(alloc: int = 255, action: int = 0) -> bytes:
    """A 16-byte PERSISTENT RESERVE IN CDB."""
    return (bytes([0x5E, action, 0, 0, 0, 0, 0]) + alloc.to_bytes(2, "big")).ljust(16, b"\0")


def pr_out(length: int = 24, action: int = 0, type_: int = 0) -> bytes:
    """A 16-byte PERSISTENT RESERVE OUT CDB with *length* in bytes 7-8."""
    head = bytes([0x5F, action, type_, 0, 0, 0, 0])
    return (head + length.to_bytes(2, "big")).ljust(16, b"\0")


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
