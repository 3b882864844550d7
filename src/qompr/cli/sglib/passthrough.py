# SPDX-License-Identifier: MIT
"""One SCSI command's answer as sg3_utils judges it, and the ``SG_IO`` call it makes.

:func:`process_resp` is sg3_utils' ``sg_cmds_process_resp`` with the ``sg_ll_*`` wrappers
around it: what they print and the exit status they reach.  :func:`send_sg_io` issues the
command as sg3_utils' Linux pass-through does (``SG_IO`` v3).
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING
from typing import NamedTuple
from typing import Protocol

from qompr.cli.sglib import err
from qompr.cli.sglib.texts import Exit
from qompr.cli.sglib.texts import convert_errno
from qompr.cli.sglib.texts import sense_category
from qompr.cli.sglib.texts import sense_text

if TYPE_CHECKING:
    from qompr.linux.sgio import Direction
    from qompr.linux.sgio import SgIoOutcome

__all__ = [
    "PassThrough",
    "Response",
    "ResponseVerdict",
    "cdb_text",
    "process_resp",
    "send_sg_io",
]

_SENSE_BUFF_LEN = 64


# NamedTuples, not attrs classes: each attrs class is compiled at import, and this module
# loads with every qompr persist and turs.


class Response(NamedTuple):
    """What came back from a backend, in the terms of Linux's ``sg_io_hdr``.

    :param status: the SAM status byte (``None`` when the command did not complete).
    :param sense: the sense bytes written.
    :param data: the data-in bytes transferred.
    :param os_error: the errno of a pass-through that failed (0: none).
    :param host_status: SG_IO's host status (transport errors).
    :param driver_status: SG_IO's driver status.
    :param duration_ms: how long the command took, if known.
    :param failure: a manager's failure that is not an OS error (protocol error...).
    """

    status: int | None = None
    sense: bytes = b""
    data: bytes = b""
    os_error: int = 0
    host_status: int = 0
    driver_status: int = 0
    duration_ms: int | None = None
    failure: str | None = None


class ResponseVerdict(NamedTuple):
    """sg3_utils' verdict on a response.

    :param ret: the exit status.
    :param act: on the GOOD path, the data-in byte count (``None`` on the others).
    :param failed: the command got no SCSI answer to judge (an OS or transport error, an
        unnamed status, a manager's failure): ``sg_cmds_process_resp`` returning -1.
    """

    ret: int
    act: int | None = None
    failed: bool = False


_DRIVER_SENSE = 0x08
_STATUS_CATEGORY = {
    0x18: Exit.RES_CONFLICT,
    0x04: Exit.CONDITION_MET,
    0x08: Exit.BUSY,
    0x28: Exit.TS_FULL,
    0x30: Exit.ACA_ACTIVE,
    0x40: Exit.TASK_ABORTED,
}
_QUIET_CATEGORIES = frozenset(
    (
        Exit.NOT_READY,
        Exit.INVALID_OP,
        Exit.ILLEGAL_REQ,
        Exit.LBA_OUT_OF_RANGE,
        Exit.ABORTED_COMMAND,
        Exit.COPY_ABORTED,
        Exit.DATA_PROTECT,
        Exit.PROTECTION,
        Exit.NO_SENSE,
        Exit.MISCOMPARE,
    )
)


def _resid_text(leadin: str, requested: int, got: int) -> str:
    # sg3_utils' wording, doubled "got" included.
    return (
        f"    {leadin}: pass-through requested {requested} bytes (data-in), got  got {got} bytes\n"
    )


def process_resp(
    resp: Response, leadin: str, verbose: int, requested: int, *, noisy: bool = True
) -> ResponseVerdict:
    """sg3_utils' ``sg_cmds_process_resp`` and the ``sg_ll_*`` wrappers around it: print
    what they print and yield the exit status.

    :param resp: what the backend answered.
    :param leadin: the command's name in messages (``Persistent reservation in``).
    :param verbose: the ``-v`` count.
    :param requested: the data-in length asked for (0 for PR OUT).
    :param noisy: report failures even without ``-v`` (every PR command is sent noisy;
        sg_turs only its first TEST UNIT READY).
    """
    if resp.failure is not None:
        if verbose or noisy:
            err(f"{leadin}: {resp.failure}\n")
        return ResponseVerdict(Exit.OTHER, failed=True)
    if resp.os_error:
        text = f"{leadin}: pass-through os error: {os.strerror(resp.os_error)}\n"
        if verbose:
            err(text)
        if resp.os_error == errno.ENXIO:
            if verbose > 2:
                err("map ENXIO to SG_LIB_CAT_NOT_READY\n")
            return ResponseVerdict(Exit.NOT_READY)
        if noisy and not verbose:
            err(text)
        return ResponseVerdict(convert_errno(resp.os_error), failed=True)
    if verbose > 2 and resp.duration_ms is not None:
        err(f"      duration={resp.duration_ms} ms\n")
    got = len(resp.data)
    driver = resp.driver_status & 0x0F
    scsi_status = (resp.status or 0) & 0x7E
    if resp.host_status or (driver and driver != _DRIVER_SENSE):
        if verbose or noisy:
            err(
                f"{leadin}: transport: Host_status=0x{resp.host_status:02x} "
                f"Driver_status=0x{resp.driver_status:02x}\n"
            )
        return ResponseVerdict(Exit.TRANSPORT_ERROR, failed=True)
    if driver == _DRIVER_SENSE or scsi_status in (0x02, 0x22):
        category = sense_category(resp.sense)
        if verbose or (noisy and category not in _QUIET_CATEGORIES):
            err(f"{leadin}:\n" + sense_text(resp.sense, raw=verbose > 1))
            check_data_in = category in (Exit.RECOVERED, Exit.MEDIUM_HARD)
            if requested > 0 and got != requested and (verbose > 2 or check_data_in or got > 0):
                err(_resid_text(leadin, requested, got))
        if category in (Exit.RECOVERED, Exit.NO_SENSE):
            return ResponseVerdict(Exit.OK)
        return ResponseVerdict(category)
    if scsi_status:
        mapped = _STATUS_CATEGORY.get(scsi_status)
        if mapped is not None:
            return ResponseVerdict(mapped)
        if verbose or noisy:
            err(f"{leadin}: scsi status: {_status_text(scsi_status)}\n")
        return ResponseVerdict(Exit.OTHER, failed=True)
    if requested > 0 and got != requested and verbose > 1:
        err(_resid_text(leadin, requested, got))
    return ResponseVerdict(Exit.OK, got)


def _status_text(status: int) -> str:
    names = {0x10: "Intermediate (obsolete)", 0x14: "Intermediate-Condition Met (obsolete)"}
    return names.get(status, f"Unknown status [0x{status:x}]")


def cdb_text(cdb: bytes) -> str:
    return "[" + " ".join(f"{b:02x}" for b in cdb) + "]"


class PassThrough(Protocol):
    """What sends one SG_IO and gives the kernel's answer back as it is (the signature of
    :meth:`qompr.managers.PRManagerDirect.passthrough`)."""

    def __call__(
        self,
        fd: int,
        cdb: bytes,
        direction: Direction,
        *,
        data_out: bytes = b"",
        data_in_size: int = 0,
    ) -> SgIoOutcome: ...


def send_sg_io(
    passthrough: PassThrough,
    fd: int,
    cdb: bytes,
    data_out: bytes,
    allocation: int,
    *,
    verbose: int,
) -> Response:
    """One SG_IO as sg3_utils' Linux pass-through issues it (the data-in buffer of the
    allocation length; the caller's pass-through has sg3_utils' 60 s timeout), and what
    sg3_utils makes of the answer.

    :param passthrough: sends the SG_IO.
    :param verbose: the ``-v`` count: from 2, a failing ioctl is reported.
    """
    from qompr.linux.sgio import Direction  # ctypes: the device path's only

    if data_out:
        direction = Direction.TO_DEV
    elif allocation > 0:
        direction = Direction.FROM_DEV
    else:
        direction = Direction.NONE
    start = time.monotonic()
    result = passthrough(fd, cdb, direction, data_out=data_out, data_in_size=allocation)
    elapsed = int((time.monotonic() - start) * 1000)
    if result.errno:
        if verbose > 1:
            code = result.errno
            err(f"ioctl(SG_IO v3) failed: {os.strerror(code)} (errno={code})\n")
        return Response(os_error=result.errno)
    data = b""
    if direction == Direction.FROM_DEV:
        data = result.data[: max(0, min(allocation, allocation - result.resid))]
    return Response(
        status=result.status,
        sense=_sense_written(result.sense, result.status, result.driver_status),
        data=data,
        host_status=result.host_status,
        driver_status=result.driver_status,
        duration_ms=elapsed,
    )


def _sense_written(buffer: bytes, status: int, driver_status: int) -> bytes:
    """The sense bytes the kernel wrote (its ``sb_len_wr``): 8 + ADDITIONAL SENSE LENGTH,
    at most sg3_utils' 64-byte buffer, when there is sense at all."""
    if not (driver_status & 0x0F == _DRIVER_SENSE or status & 0x7E in (0x02, 0x22)):
        return b""
    if len(buffer) < 8 or not any(buffer):
        return b""
    return buffer[: min(8 + buffer[7], _SENSE_BUFF_LEN, len(buffer))]
