# SPDX-License-Identifier: MIT
"""Fake devices: every documented fd kind can be made, and nothing leaks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from qompr.testing import FD_KINDS
from qompr.testing import FdFactory
from qompr.testing import open_fd_count

#: What fstat says each kind is (the loop kinds need a device: tested where one exists).
MODES = {
    "null": stat.S_ISCHR,
    "null-ro": stat.S_ISCHR,
    "null-wo": stat.S_ISCHR,
    "zero": stat.S_ISCHR,
    "reg": stat.S_ISREG,
    "reg-ro": stat.S_ISREG,
    "dir": stat.S_ISDIR,
    "pipe-r": stat.S_ISFIFO,
    "pipe-w": stat.S_ISFIFO,
    "sock": stat.S_ISSOCK,
    "ptmx": stat.S_ISCHR,
    "proc-ro": stat.S_ISREG,
}


@pytest.mark.parametrize("kind", sorted(set(FD_KINDS) - {"loop", "loop-ro"}))
def test_every_kind_is_made_and_closed(tmp_path: Path, kind: str) -> None:
    before = open_fd_count()
    with FdFactory(tmp_path) as fds:
        fd = fds.make(kind)
        mode = os.fstat(fd).st_mode
        if kind in MODES:
            assert MODES[kind](mode), (kind, oct(mode))
        assert open_fd_count() > before
    assert open_fd_count() == before


def test_read_only_kinds_are_read_only(tmp_path: Path) -> None:
    with FdFactory(tmp_path) as fds:
        for kind in ("null-ro", "reg-ro", "proc-ro"):
            fd = fds.make(kind)
            with pytest.raises(OSError):
                os.write(fd, b"x")


def test_unknown_and_unavailable_kinds_are_errors(tmp_path: Path) -> None:
    with FdFactory(tmp_path) as fds:
        with pytest.raises(ValueError, match="unknown fd kind 'floppy'"):
            fds.make("floppy")
        with pytest.raises(LookupError, match="no loop device"):
            fds.make("loop")
        assert fds.opened == []


def test_open_fd_count_of_another_process_is_read_from_proc() -> None:
    assert open_fd_count(os.getpid()) == open_fd_count()
