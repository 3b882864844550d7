# SPDX-License-Identifier: MIT
"""The SG_IO ioctl through ctypes, and how qemu-pr-helper turns its outcome into SCSI status.

:func:`sg_io` issues one ``SG_IO`` (``<scsi/sg.h>``) and reports the raw outcome;
:func:`pr_helper_sgio` does what qemu-pr-helper 7.2's ``do_sgio_worker`` does for a PR command
on a non-multipath fd, mapping errno, host status and driver status as QEMU's
``scsi_sense_from_errno`` / ``scsi_sense_from_host_status`` do (qemu-pr-facts.md §1.7-1.8).
The ioctl releases the GIL, so callers can run it in worker threads.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import threading
from typing import Final

import attrs

from qompr.scsi import HostStatus
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

__all__ = [
    "SG_ERR_DRIVER_TIMEOUT",
    "SG_IO",
    "Direction",
    "SgIoOutcome",
    "map_outcome",
    "pr_helper_sgio",
    "sense_from_errno",
    "sense_from_host_status",
    "sg_io",
]

#: ``SG_IO`` request number (``<scsi/sg.h>``).
SG_IO: Final = 0x2285
#: ``SG_ERR_DRIVER_TIMEOUT``; QEMU tests ``driver_status`` against it as a bit mask.
SG_ERR_DRIVER_TIMEOUT: Final = 0x06
_SENSE_SIZE: Final = 96
_DATA_SIZE: Final = 8192


class Direction(enum.IntEnum):
    """``dxfer_direction`` values."""

    NONE = -1
    TO_DEV = -2
    FROM_DEV = -3


class _SgIoHdr(ctypes.Structure):
    # struct sg_io_hdr, <scsi/sg.h>; natural alignment gives the kernel's layout.
    _fields_ = (
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int


@attrs.frozen
class SgIoOutcome:
    """What one ``SG_IO`` gave back.

    :param errno: the ioctl's errno, 0 if it succeeded.
    :param status: the SCSI status byte.
    :param host_status: the host (transport) status.
    :param driver_status: the driver status.
    :param resid: requested minus transferred bytes.
    :param sense: the whole sense buffer (zero-filled before the call).
    :param data: the data-in buffer as the device left it (data-in only).
    """

    errno: int
    status: int = 0
    host_status: int = 0
    driver_status: int = 0
    resid: int = 0
    sense: bytes = b""
    data: bytes = b""


class _Buffers(threading.local):
    """Per-thread header and buffers, so the ioctl runs in many threads without locking."""

    def __init__(self) -> None:
        self.hdr = _SgIoHdr()
        self.hdr_address = ctypes.addressof(self.hdr)
        self.cdb = ctypes.create_string_buffer(16)
        self.sense = ctypes.create_string_buffer(_SENSE_SIZE)
        self.data = ctypes.create_string_buffer(_DATA_SIZE)
        self.ready = False

    def prepare(self) -> None:
        """Fill the fields :func:`pr_helper_sgio` never changes."""
        hdr = self.hdr
        ctypes.memset(self.hdr_address, 0, ctypes.sizeof(hdr))
        hdr.interface_id = ord("S")
        hdr.cmd_len = 16
        hdr.mx_sb_len = _SENSE_SIZE
        hdr.cmdp = ctypes.addressof(self.cdb)
        hdr.sbp = ctypes.addressof(self.sense)
        hdr.dxferp = ctypes.addressof(self.data)
        hdr.timeout = 1
        self.ready = True


_buffers = _Buffers()


def sg_io(
    fd: int,
    cdb: bytes,
    direction: Direction,
    *,
    data_out: bytes = b"",
    data_in_size: int = 0,
    cmd_len: int | None = None,
    timeout_ms: int = 1,
) -> SgIoOutcome:
    """Issue one ``SG_IO`` on *fd*.

    :param fd: the device (any fd: the kernel refuses what is not a SCSI device).
    :param cdb: up to 16 CDB bytes.
    :param direction: the data direction.
    :param data_out: bytes for :attr:`Direction.TO_DEV` (at most 8192).
    :param data_in_size: buffer size for :attr:`Direction.FROM_DEV` (at most 8192).
    :param cmd_len: ``cmd_len``; ``len(cdb)`` if omitted (qemu-pr-helper always says 16).
    :param timeout_ms: ``timeout`` in milliseconds; qemu-pr-helper passes 1, which the block
        layer raises to its 7 s minimum for /dev/sdX.
    :returns: the raw outcome; nothing is raised for a failing ioctl.
    """
    bufs = _buffers
    bufs.ready = False  # sg_io sets every field; pr_helper_sgio must prepare again
    hdr = bufs.hdr
    ctypes.memset(ctypes.addressof(hdr), 0, ctypes.sizeof(hdr))
    ctypes.memset(bufs.sense, 0, _SENSE_SIZE)
    cdb = bytes(cdb[:16])
    ctypes.memmove(bufs.cdb, cdb.ljust(16, b"\0"), 16)
    hdr.interface_id = ord("S")
    hdr.dxfer_direction = direction
    hdr.cmd_len = len(cdb) if cmd_len is None else cmd_len
    hdr.mx_sb_len = _SENSE_SIZE
    hdr.cmdp = ctypes.addressof(bufs.cdb)
    hdr.sbp = ctypes.addressof(bufs.sense)
    hdr.timeout = timeout_ms
    if direction == Direction.TO_DEV:
        size = min(len(data_out), _DATA_SIZE)
        ctypes.memmove(bufs.data, data_out, size)
    elif direction == Direction.FROM_DEV:
        size = min(data_in_size, _DATA_SIZE)
    else:
        size = 0
    hdr.dxfer_len = size
    hdr.dxferp = ctypes.addressof(bufs.data) if size else None
    ret = _ioctl(fd, SG_IO, ctypes.addressof(hdr))
    if ret < 0:
        return SgIoOutcome(ctypes.get_errno(), sense=bufs.sense.raw)
    data_in = bufs.data.raw[:size] if direction == Direction.FROM_DEV else b""
    return SgIoOutcome(
        0,
        hdr.status,
        hdr.host_status,
        hdr.driver_status,
        hdr.resid,
        bufs.sense.raw,
        data_in,
    )


def sense_from_errno(err: int, *, qemu_7_2: bool = False) -> tuple[ScsiStatus, SenseCode | None]:
    """QEMU's ``scsi_sense_from_errno`` (Linux build): the status and sense for an errno.

    :param err: an errno value (0 for success).
    :param qemu_7_2: QEMU 7.2's table, which has no ENODEV case: an offline /dev/sdX (SG_IO
        fails with ENODEV) is I/O PROCESS TERMINATED there, TARGET FAILURE in current QEMU.
    :returns: the status, and the sense code when it is CHECK CONDITION.
    """
    if err == 0:
        return ScsiStatus.GOOD, None
    if err == errno.EDOM:
        return ScsiStatus.TASK_SET_FULL, None
    if err == errno.EBADE:
        return ScsiStatus.RESERVATION_CONFLICT, None
    if err == errno.ENODEV and not qemu_7_2:
        # Current QEMU, Linux only (where ENODEV is not ENOMEDIUM); 7.2 takes the default,
        # as the real qemu-pr-helper 7.2 answers on LIO (tests/vm/test_pr_helper.py).
        return ScsiStatus.CHECK_CONDITION, SenseCode.TARGET_FAILURE
    code = _ERRNO_SENSE.get(err, SenseCode.IO_ERROR)
    return ScsiStatus.CHECK_CONDITION, code


_ERRNO_SENSE: dict[int, SenseCode] = {
    errno.EREMOTEIO: SenseCode.TARGET_FAILURE,
    errno.ENODATA: SenseCode.READ_ERROR,
    errno.ENOMEDIUM: SenseCode.NO_MEDIUM,
    errno.ENOMEM: SenseCode.TARGET_FAILURE,
    errno.EINVAL: SenseCode.INVALID_FIELD,
    errno.ENOSPC: SenseCode.SPACE_ALLOC_FAILED,
}


def sense_from_host_status(host_status: int) -> tuple[ScsiStatus, SenseCode | None]:
    """QEMU's ``scsi_sense_from_host_status``.

    As in QEMU, a host status it does not list (0x07 ``DID_ERROR`` among them) reads as GOOD;
    qompr keeps that quirk so its answers match qemu-pr-helper's.

    :param host_status: ``sg_io_hdr.host_status``.
    :returns: the status, and the sense code when it is CHECK CONDITION.
    """
    if host_status == HostStatus.BUSY:
        return ScsiStatus.BUSY, None
    if host_status == HostStatus.RESERVATION_ERROR:
        return ScsiStatus.RESERVATION_CONFLICT, None
    code = _HOST_SENSE.get(host_status)
    if code is None:
        return ScsiStatus.GOOD, None
    return ScsiStatus.CHECK_CONDITION, code


_HOST_SENSE: dict[int, SenseCode] = {
    HostStatus.NO_LUN: SenseCode.LUN_NOT_RESPONDING,
    HostStatus.TIME_OUT: SenseCode.COMMAND_TIMEOUT,
    HostStatus.BAD_RESPONSE: SenseCode.LUN_COMM_FAILURE,
    HostStatus.ABORTED: SenseCode.COMMAND_ABORTED,
    HostStatus.RESET: SenseCode.RESET,
    HostStatus.TRANSPORT_DISRUPTED: SenseCode.I_T_NEXUS_LOSS,
    HostStatus.TARGET_FAILURE: SenseCode.TARGET_FAILURE,
    HostStatus.ALLOCATION_FAILURE: SenseCode.SPACE_ALLOC_FAILED,
    HostStatus.MEDIUM_ERROR: SenseCode.READ_ERROR,
}


def map_outcome(
    outcome: SgIoOutcome, size: int, *, qemu_7_2: bool = False
) -> tuple[int, bytes, int]:
    """``do_sgio_worker``'s decision: (status, 96 sense bytes, bytes transferred).

    :param outcome: what :func:`sg_io` returned.
    :param size: the ``dxfer_len`` that was asked for.
    :param qemu_7_2: map errno with QEMU 7.2's table (see :func:`sense_from_errno`).
    """
    sense = outcome.sense.ljust(_SENSE_SIZE, b"\0")
    code: SenseCode | None
    if outcome.errno:
        status, code = sense_from_errno(outcome.errno, qemu_7_2=qemu_7_2)
    elif outcome.host_status:
        status, code = sense_from_host_status(outcome.host_status)
    elif outcome.driver_status & SG_ERR_DRIVER_TIMEOUT:
        status, code = ScsiStatus.BUSY, None
    else:
        return outcome.status, sense, (size - outcome.resid) if outcome.status == 0 else 0
    if code is not None:
        # scsi_build_sense writes 18 bytes over the zeroed buffer; the kernel's sense (if
        # any) beyond them is kept, as in QEMU.
        sense = code.to_bytes() + sense[18:]
    return int(status), sense, (size - outcome.resid) if status == ScsiStatus.GOOD else 0


_ZERO_SENSE = bytes(_SENSE_SIZE)
# For the errnos a non-SCSI fd gives (ENOTTY, EINVAL, ...): (status, 96 sense bytes), built
# once.  The sense buffer was zeroed before the call and the kernel wrote nothing into it.
_ERRNO_ANSWERS: dict[int, tuple[int, bytes]] = {}


def _errno_answer(err: int) -> tuple[int, bytes]:
    answer = _ERRNO_ANSWERS.get(err)
    if answer is None:
        status, code = sense_from_errno(err, qemu_7_2=True)
        sense = code.to_bytes().ljust(_SENSE_SIZE, b"\0") if code is not None else _ZERO_SENSE
        answer = _ERRNO_ANSWERS[err] = (int(status), sense)
    return answer


def pr_helper_sgio(fd: int, cdb: bytes, data: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run a PR command on *fd* exactly as qemu-pr-helper 7.2's ``do_sgio_worker`` does.

    PR IN goes out with an 8192-byte buffer whatever the allocation length (the caller cuts
    the answer to it); PR OUT with the parameter list.  ``cmd_len`` is 16 and the timeout
    1 ms.  (qemu-pr-helper's read-only-fd check for PR OUT comes before this call.)

    :param fd: the logical unit's fd.
    :param cdb: the 16-byte CDB.
    :param data: the PR OUT parameter list.
    :returns: (status, 96 sense bytes, data-in) with data-in cut to what was transferred.
    """
    bufs = _buffers
    hdr = bufs.hdr
    if not bufs.ready:
        bufs.prepare()
    ctypes.memmove(bufs.sense, _ZERO_SENSE, _SENSE_SIZE)
    ctypes.memmove(bufs.cdb, cdb, 16)
    data_in = cdb[0] != 0x5F
    if data_in:
        hdr.dxfer_direction = Direction.FROM_DEV
        size = _DATA_SIZE
    else:
        hdr.dxfer_direction = Direction.TO_DEV
        size = len(data)
        ctypes.memmove(bufs.data, data, size)
    hdr.dxfer_len = size
    hdr.resid = 0
    if _ioctl(fd, SG_IO, bufs.hdr_address) < 0:
        status, sense = _errno_answer(ctypes.get_errno())
        return status, sense, b""
    outcome = SgIoOutcome(
        0,
        hdr.status,
        hdr.host_status,
        hdr.driver_status,
        hdr.resid,
        bufs.sense.raw,
        bufs.data.raw[:size] if data_in else b"",
    )
    status, sense, transferred = map_outcome(outcome, size, qemu_7_2=True)
    if not data_in:
        return status, sense, b""
    transferred = max(0, min(transferred, _DATA_SIZE))
    return status, sense, outcome.data[:transferred]
