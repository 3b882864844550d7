# SPDX-License-Identifier: MIT
"""qemu-pr-helper's mapping of an SG_IO outcome to status and sense (docs/reference)."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from qompr.linux import sgio
from qompr.linux.sgio import Direction
from qompr.linux.sgio import SgIoOutcome
from qompr.linux.sgio import sg_io
from qompr.managers import _sgio
from qompr.managers._sgio import map_outcome
from qompr.managers._sgio import pr_helper_sgio
from qompr.managers._sgio import sense_from_errno
from qompr.managers._sgio import sense_from_host_status
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

CHECK = ScsiStatus.CHECK_CONDITION


def triple(result: ScsiResult) -> tuple[int, bytes, bytes]:
    return int(result.status), result.sense, result.data


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (0, ScsiStatus.GOOD, None),
        (errno.EDOM, ScsiStatus.TASK_SET_FULL, None),
        (errno.EBADE, ScsiStatus.RESERVATION_CONFLICT, None),
        (errno.ENODATA, CHECK, SenseCode.READ_ERROR),
        (errno.EREMOTEIO, CHECK, SenseCode.TARGET_FAILURE),
        (errno.ENODEV, CHECK, SenseCode.TARGET_FAILURE),  # current QEMU, Linux only
        (errno.ENXIO, CHECK, SenseCode.IO_ERROR),  # SG_IO on an offline /dev/sgN
        (errno.ENOMEDIUM, CHECK, SenseCode.NO_MEDIUM),
        (errno.ENOMEM, CHECK, SenseCode.TARGET_FAILURE),
        (errno.EINVAL, CHECK, SenseCode.INVALID_FIELD),
        (errno.ENOSPC, CHECK, SenseCode.SPACE_ALLOC_FAILED),
        (errno.ENOTTY, CHECK, SenseCode.IO_ERROR),
        (errno.EIO, CHECK, SenseCode.IO_ERROR),
        (errno.EPERM, CHECK, SenseCode.IO_ERROR),
    ],
)
def test_errno_mapping(err: int, status: ScsiStatus, code: SenseCode | None) -> None:
    assert sense_from_errno(err) == (status, code)
    if err != errno.ENODEV:  # the one entry QEMU 7.2 does not have
        assert sense_from_errno(err, qemu_7_2=True) == (status, code)


def test_qemu_7_2_has_no_enodev_entry() -> None:
    # qemu-pr-helper 7.2 on an offline /dev/sdX (SG_IO fails with ENODEV) answers I/O
    # PROCESS TERMINATED, the default (tests/vm/test_pr_helper.py); later QEMU added
    # ENODEV -> TARGET FAILURE
    assert sense_from_errno(errno.ENODEV, qemu_7_2=True) == (CHECK, SenseCode.IO_ERROR)


@pytest.mark.parametrize(
    ("host", "status", "code"),
    [
        (0x01, CHECK, SenseCode.LUN_NOT_RESPONDING),
        (0x02, ScsiStatus.BUSY, None),
        (0x03, CHECK, SenseCode.COMMAND_TIMEOUT),
        (0x04, CHECK, SenseCode.LUN_COMM_FAILURE),
        (0x05, CHECK, SenseCode.COMMAND_ABORTED),
        (0x07, ScsiStatus.GOOD, None),  # DID_ERROR falls through to GOOD, as in QEMU
        (0x08, CHECK, SenseCode.RESET),
        (0x0E, CHECK, SenseCode.I_T_NEXUS_LOSS),
        (0x10, CHECK, SenseCode.TARGET_FAILURE),
        (0x11, ScsiStatus.RESERVATION_CONFLICT, None),
        (0x12, CHECK, SenseCode.SPACE_ALLOC_FAILED),
        (0x13, CHECK, SenseCode.READ_ERROR),
        (0x0B, ScsiStatus.GOOD, None),
    ],
)
def test_host_status_mapping(host: int, status: ScsiStatus, code: SenseCode | None) -> None:
    assert sense_from_host_status(host) == (status, code)


def test_outcome_precedence_and_transfer_size() -> None:
    kernel_sense = bytes([0x72, 0x06, 0x29, 0x00]).ljust(96, b"\0")
    # errno first; built sense overwrites 18 bytes of the zeroed buffer.
    status, sense, size = map_outcome(SgIoOutcome(errno.EINVAL, host_status=3), 8192)
    assert (status, sense, size) == (2, SenseCode.INVALID_FIELD.to_bytes().ljust(96, b"\0"), 0)
    # then host status
    assert map_outcome(SgIoOutcome(0, status=0, host_status=0x02, resid=5), 100)[::2] == (8, 0)
    # then the driver-timeout bit, tested as a mask
    assert map_outcome(SgIoOutcome(0, driver_status=0x16), 100)[0] == ScsiStatus.BUSY
    # else the device's status and sense pass through; GOOD subtracts the residue
    assert map_outcome(SgIoOutcome(0, 2, sense=kernel_sense), 100) == (2, kernel_sense, 0)
    assert map_outcome(SgIoOutcome(0, 0, resid=92), 100)[2] == 8


@pytest.mark.parametrize(
    ("err", "current"),
    [(errno.ENODEV, SenseCode.TARGET_FAILURE), (errno.ENXIO, SenseCode.IO_ERROR)],
)
def test_offline_device_errnos(
    monkeypatch: pytest.MonkeyPatch, err: int, current: SenseCode
) -> None:
    """SG_IO on an fd of an offline SCSI device fails: ENODEV from sd, ENXIO from sg.  The
    real qemu-pr-helper 7.2 answers both with I/O PROCESS TERMINATED (0B/00/06) and 78 zero
    bytes (seen on LIO in tests/vm/test_pr_helper.py); so must the daemon's path.
    pr-manager-direct maps as current QEMU: ENODEV is TARGET FAILURE there."""

    def failing_ioctl(fd: int, request: int, arg: int) -> int:
        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(sgio, "_ioctl", failing_ioctl)
    monkeypatch.setattr(sgio, "_FAILED", {})
    monkeypatch.setattr(_sgio, "_ERRNO_ANSWERS", {})
    expected = (2, SenseCode.IO_ERROR.to_bytes().ljust(96, b"\0"))
    assert triple(pr_helper_sgio(7, bytes([0x5E]).ljust(16, b"\0"))) == (*expected, b"")
    assert triple(pr_helper_sgio(7, bytes([0x5F]).ljust(16, b"\0"), bytes(24))) == (
        *expected, b""
    )  # fmt: skip
    # pr-manager-direct's path (sg_io + map_outcome)
    outcome = sg_io(7, bytes([0x5E]).ljust(10, b"\0"), Direction.FROM_DEV, data_in_size=8)
    assert outcome.errno == err
    assert map_outcome(outcome, 8, qemu_7_2=True) == (*expected, 0)
    assert map_outcome(outcome, 8) == (2, current.to_bytes().ljust(96, b"\0"), 0)


def test_pr_helper_sgio_on_a_non_scsi_fd() -> None:
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        assert triple(pr_helper_sgio(fd, bytes([0x5E]).ljust(16, b"\0"))) == (
            2, SenseCode.IO_ERROR.to_bytes().ljust(96, b"\0"), b""
        )  # fmt: skip
    finally:
        os.close(fd)
    # a closed fd: EBADF, mapped as any errno without an entry
    result = pr_helper_sgio(fd, bytes([0x5F]).ljust(16, b"\0"), bytes(24))
    assert result.sense[:18] == SenseCode.IO_ERROR.to_bytes()


def test_a_good_pr_in_keeps_what_was_transferred_and_every_sense_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def device(fd: int, request: int, arg: int) -> int:
        hdr = sgio._buffers.hdr
        hdr.status, hdr.resid = 0, 8192 - 12
        ctypes.memmove(sgio._buffers.data, b"abcdefghijkl", 12)
        ctypes.memmove(sgio._buffers.sense, b"\x70junk", 5)  # kept, as qemu-pr-helper sends it
        return 0

    monkeypatch.setattr(sgio, "_ioctl", device)
    result = pr_helper_sgio(7, bytes([0x5E]).ljust(16, b"\0"))
    assert triple(result) == (0, b"\x70junk".ljust(96, b"\0"), b"abcdefghijkl")


class _SparseDevice:
    """An ioctl that answers a data-in command as LIO does a READ FULL STATUS: *length* bytes
    transferred (``resid`` says so) of which it writes only *written*, leaving the rest of
    the caller's buffer as it was."""

    def __init__(self) -> None:
        self.written = b""
        self.length = 0

    def __call__(self, fd: int, request: int, address: int | None) -> int:
        hdr = sgio._SgIoHdr.from_address(address or 0)
        if hdr.dxfer_direction == Direction.FROM_DEV:
            ctypes.memmove(hdr.dxferp, self.written, len(self.written))
            hdr.resid = hdr.dxfer_len - self.length
        hdr.status = 0
        return 0


def test_data_in_bytes_the_device_did_not_write_are_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LIO writes no R_HOLDER/TYPE for a non-holder and relies on a zeroed buffer; an
    # all-registrants holder read before must not show through (tests/vm/test_persist.py).
    device = _SparseDevice()
    monkeypatch.setattr(sgio, "_ioctl", device)
    cdb = bytes([0x5E, 3, 0, 0, 0, 0, 0, 0x20, 0, 0]).ljust(16, b"\0")
    device.written, device.length = b"\xee" * 64, 64
    # sg_io hands back the whole buffer (its callers cut it by resid)
    assert sg_io(0, cdb[:10], Direction.FROM_DEV, data_in_size=8192).data[:65] == (
        b"\xee" * 64 + b"\0"
    )
    assert pr_helper_sgio(0, cdb).data == b"\xee" * 64
    device.written = b"\x11" * 4
    assert sg_io(0, cdb[:10], Direction.FROM_DEV, data_in_size=8192).data == (
        b"\x11" * 4 + bytes(8188)
    )
    device.written = b"\xee" * 64
    pr_helper_sgio(0, cdb)
    device.written = b"\x22" * 4
    assert pr_helper_sgio(0, cdb).data == b"\x22" * 4 + bytes(60)
    # a PR OUT's parameter list in the same buffer does not show through either
    pr_helper_sgio(0, bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 24]).ljust(16, b"\0"), b"\x33" * 24)
    assert pr_helper_sgio(0, cdb).data == b"\x22" * 4 + bytes(60)
    sg_io(0, bytes(10), Direction.TO_DEV, data_out=b"\x44" * 24)
    assert sg_io(0, cdb[:10], Direction.FROM_DEV, data_in_size=64).data == b"\x22" * 4 + bytes(60)
