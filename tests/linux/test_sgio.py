# SPDX-License-Identifier: MIT
"""SG_IO through ctypes: the raw outcome (its SCSI meaning: tests/managers/test_sgio.py)."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from pathlib import Path

from qompr.linux import sgio
from qompr.linux.fdkind import sgio_cannot_block
from qompr.linux.sgio import Direction
from qompr.linux.sgio import pr_sg_io
from qompr.linux.sgio import sg_io


def test_header_layout_is_the_kernels() -> None:
    assert ctypes.sizeof(sgio._SgIoHdr) == 88  # struct sg_io_hdr on 64-bit Linux
    assert sgio._SgIoHdr.status.offset == 64
    assert sgio._SgIoHdr.resid.offset == 72


def test_sg_io_on_a_non_scsi_fd_fails_with_enotty() -> None:
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        outcome = sg_io(fd, bytes([0x12, 0, 0, 0, 36, 0]), Direction.FROM_DEV, data_in_size=36)
        assert outcome.errno == errno.ENOTTY
        failed = pr_sg_io(fd, bytes([0x5E]).ljust(16, b"\0"))
        assert (failed.errno, failed.sense) == (errno.ENOTTY, bytes(96))
    finally:
        os.close(fd)


def test_sg_io_on_a_closed_fd_is_ebadf_and_io_error() -> None:
    fd = os.open("/dev/null", os.O_RDWR)
    os.close(fd)
    assert sg_io(fd, bytes(6), Direction.NONE).errno == errno.EBADF
    assert pr_sg_io(fd, bytes([0x5F]).ljust(16, b"\0"), bytes(24)).errno == errno.EBADF


def test_which_fds_may_run_sg_io_on_the_loop(tmp_path: Path) -> None:
    r, w = os.pipe()
    a, b = socket.socketpair()
    null = os.open("/dev/null", os.O_RDWR)
    reg = os.open(str(tmp_path), os.O_RDONLY)
    ptmx = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    evt = os.eventfd(0)
    try:
        assert sgio_cannot_block(r) and sgio_cannot_block(w)
        assert sgio_cannot_block(a.fileno())
        assert sgio_cannot_block(null)
        assert sgio_cannot_block(reg)  # a directory on a local filesystem
        assert not sgio_cannot_block(ptmx)  # a character device that is not the mem driver
        assert not sgio_cannot_block(evt)  # unknown kinds go to a worker thread
    finally:
        for fd in (r, w, null, reg, ptmx, evt):
            os.close(fd)
        a.close()
        b.close()
