# SPDX-License-Identifier: MIT
"""The SG_IO ioctl through ctypes: the raw outcome, no SCSI policy.

:func:`sg_io` issues one ``SG_IO`` (``<scsi/sg.h>``) with the caller's parameters;
:func:`pr_sg_io` issues it as qemu-pr-helper's ``do_sgio_worker`` does for a PR command
(``cmd_len`` 16, a 1 ms timeout, an 8192-byte data-in buffer), with buffers prepared once per
thread.  What an outcome means as SCSI status and sense (QEMU's errno and host-status tables)
is the managers' business: :mod:`qompr.managers._sgio`.  The ioctl releases the GIL, so
callers can run it in worker threads.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import threading
from collections.abc import Callable
from typing import Final
from typing import NamedTuple

__all__ = [
    "GRACE_MS",
    "PR_TIMEOUT_MS",
    "SG_ERR_DRIVER_TIMEOUT",
    "SG_IO",
    "Direction",
    "SgIoOutcome",
    "pr_sg_io",
    "sg_io",
    "sg_io_waited",
]

#: ``SG_IO`` request number (``<scsi/sg.h>``).
SG_IO: Final = 0x2285
#: ``SG_ERR_DRIVER_TIMEOUT``; QEMU tests ``driver_status`` against it as a bit mask.
SG_ERR_DRIVER_TIMEOUT: Final = 0x06
#: qemu-pr-helper's ``timeout`` (ms); the block layer raises it to 7 s on /dev/sdX.
PR_TIMEOUT_MS: Final = 1
#: How long after its ``timeout`` a caller of :func:`sg_io_waited` still waits for the
#: kernel's own answer: the SCSI error handler aborts a timed-out command first, and the block
#: layer's timer runs late by up to a second (it rounds expiries up to whole seconds).
GRACE_MS: Final = 2000
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


class SgIoOutcome(NamedTuple):
    """What one ``SG_IO`` gave back (immutable; a NamedTuple, so that issuing SG_IO needs no
    attrs: ``qompr turs`` on a device imports no attrs at all, and each outcome is built
    faster than a frozen attrs instance).

    :param errno: the ioctl's errno, 0 if it succeeded.
    :param status: the SCSI status byte.
    :param host_status: the host (transport) status.
    :param driver_status: the driver status.
    :param resid: requested minus transferred bytes.
    :param sense: the whole sense buffer (zero-filled before the call).
    :param data: the data-in buffer (zero-filled before the call) as the device left it
        (data-in only).
    """

    errno: int
    status: int = 0
    host_status: int = 0
    driver_status: int = 0
    resid: int = 0
    sense: bytes = b""
    data: bytes = b""


class _Buffers(threading.local):
    """Per-thread header and buffers, so the ioctl runs in many threads without locking.

    The data buffer is zeroed before every data-in command.  A device need not write every
    byte it transfers: LIO leaves the reserved bytes of a READ FULL STATUS descriptor, and
    the R_HOLDER/TYPE byte pair of a non-holder, as they were, and relies on tcm_loop's
    clearing of the first scatterlist entry only (target_submit()).  SG_IO on /dev/sdX
    maps the caller's pages directly, so once the buffer crosses a page within the answer,
    those bytes came from the previous command: an all-registrants holder that no longer
    holds (tests/vm/test_persist.py, ``stale_buffer_*``).
    """

    def __init__(self) -> None:
        self.hdr = _SgIoHdr()
        self.hdr_address = ctypes.addressof(self.hdr)
        self.cdb = ctypes.create_string_buffer(16)
        self.sense = ctypes.create_string_buffer(_SENSE_SIZE)
        self.data = ctypes.create_string_buffer(_DATA_SIZE)
        self.ready = False
        # pr_sg_io skips rewriting what the last call left as it wants it.
        self.sense_dirty = True
        self.data_dirty = True
        self.last_cdb = b""
        self.last_in = False

    def prepare(self) -> None:
        """Fill the fields :func:`pr_sg_io` never changes."""
        hdr = self.hdr
        ctypes.memset(self.hdr_address, 0, ctypes.sizeof(hdr))
        hdr.interface_id = ord("S")
        hdr.cmd_len = 16
        hdr.mx_sb_len = _SENSE_SIZE
        hdr.cmdp = ctypes.addressof(self.cdb)
        hdr.sbp = ctypes.addressof(self.sense)
        hdr.dxferp = ctypes.addressof(self.data)
        hdr.timeout = PR_TIMEOUT_MS
        self.ready = True
        self.sense_dirty = True
        self.data_dirty = True
        self.last_cdb = b""
        self.last_in = False


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
    bufs.ready = False  # sg_io sets every field; pr_sg_io must prepare again
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
        # The buffer is reused: bytes the device does not write must not be an earlier
        # command's (see _Buffers).
        ctypes.memset(bufs.data, 0, size)
    else:
        size = 0
    hdr.dxfer_len = size
    hdr.dxferp = ctypes.addressof(bufs.data) if size else None
    ret = _ioctl(fd, SG_IO, ctypes.addressof(hdr))
    if ret < 0:
        return SgIoOutcome(ctypes.get_errno(), sense=bufs.sense.raw)
    return _answered(
        hdr, bufs.sense.raw, bufs.data.raw[:size] if direction == Direction.FROM_DEV else b""
    )


_ZERO_SENSE = bytes(_SENSE_SIZE)
# A failed ioctl wrote nothing into the zeroed sense buffer: one outcome per errno will do.
_FAILED: dict[int, SgIoOutcome] = {}


def pr_sg_io(fd: int, cdb: bytes, data: bytes = b"") -> SgIoOutcome:
    """One ``SG_IO`` as qemu-pr-helper 7.2's ``do_sgio_worker`` issues a PR command.

    PR IN (any opcode but 5Fh) goes out with an 8192-byte buffer whatever the allocation
    length (the caller cuts the answer to it); PR OUT with the parameter list.  ``cmd_len``
    is 16 and the timeout :data:`PR_TIMEOUT_MS`.

    :param fd: the logical unit's fd.
    :param cdb: the 16-byte CDB.
    :param data: the PR OUT parameter list (at most 8192 bytes).
    :returns: the outcome; its data is the whole buffer (cut it by :attr:`~SgIoOutcome.resid`).
    """
    bufs = _buffers
    hdr = bufs.hdr
    if not bufs.ready:
        bufs.prepare()
    if bufs.sense_dirty:  # the sense buffer goes in zeroed; a failed ioctl writes nothing
        ctypes.memmove(bufs.sense, _ZERO_SENSE, _SENSE_SIZE)
        bufs.sense_dirty = False
    if cdb != bufs.last_cdb:
        ctypes.memmove(bufs.cdb, cdb, 16)
        bufs.last_cdb = cdb
    data_in = cdb[0] != 0x5F
    if data_in:
        size = _DATA_SIZE
        # qemu-pr-helper reads into its per-connection buffer as it is; zeroed here, so no
        # answer carries bytes of an earlier command, another client's included (_Buffers).
        # Only a successful ioctl can have written into it.
        if bufs.data_dirty:
            ctypes.memset(bufs.data, 0, size)
            bufs.data_dirty = False
        if not bufs.last_in:
            hdr.dxfer_direction = Direction.FROM_DEV
            hdr.dxfer_len = size
            bufs.last_in = True
    else:
        size = len(data)
        ctypes.memmove(bufs.data, data, size)
        bufs.data_dirty = True
        hdr.dxfer_direction = Direction.TO_DEV
        hdr.dxfer_len = size
        bufs.last_in = False
    if _ioctl(fd, SG_IO, bufs.hdr_address) < 0:
        err = ctypes.get_errno()
        if err != errno.ENOTTY:  # not a SCSI fd: refused before any transfer
            bufs.sense_dirty = bufs.data_dirty = True
        outcome = _FAILED.get(err)
        if outcome is None:
            outcome = _FAILED[err] = SgIoOutcome(err, sense=_ZERO_SENSE)
        return outcome
    bufs.sense_dirty = bufs.data_dirty = True
    return _answered(hdr, bufs.sense.raw, bufs.data.raw[:size] if data_in else b"")


def _answered(hdr: _SgIoHdr, sense: bytes, data: bytes) -> SgIoOutcome:
    """The outcome of an ``SG_IO`` the kernel carried out, from the header it filled in."""
    return SgIoOutcome(0, hdr.status, hdr.host_status, hdr.driver_status, hdr.resid, sense, data)


def sg_io_waited(call: Callable[[], SgIoOutcome], wait_ms: int, *, name: str) -> SgIoOutcome:
    """*call* (one SG_IO) in a worker thread, waited for at most *wait_ms* milliseconds
    (its ``timeout`` + :data:`GRACE_MS`), so the caller is not held when the kernel cannot end
    the command (LIO on Linux 6.1 wedged by PREEMPT AND ABORT, docs/vm-testbed.md).

    :param name: the worker thread's name.
    :returns: its outcome (what it raised is raised here); with no answer in time, what the
        kernel reports for a command it timed out and aborted: host status ``DID_TIME_OUT``
        (``scsi_timeout()``).  The worker stays blocked in the kernel, as a daemon thread
        that does not hold up the interpreter's exit.
    """
    answers: list[SgIoOutcome | BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            answers.append(call())
        except BaseException as exc:  # handed to the caller below
            answers.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name=name, daemon=True).start()
    if not done.wait(wait_ms / 1000):
        from qompr.scsi import HostStatus

        return SgIoOutcome(0, host_status=HostStatus.TIME_OUT)
    answer = answers[0]
    if isinstance(answer, BaseException):
        raise answer
    return answer
