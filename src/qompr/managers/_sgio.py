# SPDX-License-Identifier: MIT
"""What an SG_IO outcome means: QEMU's status and sense for a PR command sent with SG_IO.

The ioctl itself is :mod:`qompr.linux.sgio`; this is the policy the managers that send it
share (QEMU's ``scsi_sense_from_errno`` / ``scsi_sense_from_host_status`` and
``do_sgio_worker``'s order of tests; docs/reference):

* :func:`map_outcome`: errno, then host status, then the driver-timeout bit, then the
  device's own status and sense: ``pr-manager-direct`` (current QEMU's errno table) and
  ``pr-manager-multipath``'s TEST UNIT READY;
* :func:`pr_helper_sgio`: qemu-pr-helper 7.2's executor for a non-multipath fd, all 96
  sense bytes kept and 7.2's errno table: ``qompr-pr-helper``'s default, answering byte for
  byte as the real program.
"""

from __future__ import annotations

import errno
from typing import Final

from qompr.linux.sgio import SG_ERR_DRIVER_TIMEOUT
from qompr.linux.sgio import SgIoOutcome
from qompr.linux.sgio import pr_sg_io
from qompr.scsi import HostStatus
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

__all__ = ["map_outcome", "pr_helper_sgio", "sense_from_errno", "sense_from_host_status"]

_SENSE_SIZE: Final = 96
_DATA_SIZE: Final = 8192


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
# For the errnos a non-SCSI fd gives (ENOTTY, EINVAL, ...), built once: the sense buffer was
# zeroed before the call and the kernel wrote nothing into it.
_ERRNO_ANSWERS: dict[int, ScsiResult] = {}


def _errno_answer(err: int) -> ScsiResult:
    answer = _ERRNO_ANSWERS.get(err)
    if answer is None:
        status, code = sense_from_errno(err, qemu_7_2=True)
        sense = code.to_bytes().ljust(_SENSE_SIZE, b"\0") if code is not None else _ZERO_SENSE
        answer = _ERRNO_ANSWERS[err] = ScsiResult(status, sense)
    return answer


def pr_helper_sgio(fd: int, cdb: bytes, data: bytes = b"") -> ScsiResult:
    """Run a PR command on *fd* exactly as qemu-pr-helper 7.2's ``do_sgio_worker`` does.

    The ioctl is :func:`~qompr.linux.sgio.pr_sg_io`; its outcome is mapped with QEMU 7.2's
    tables.  Unlike :meth:`ScsiResult.check` answers, the sense is the whole 96-byte buffer,
    with any status, as qemu-pr-helper sends it.  (qemu-pr-helper's read-only-fd check for
    PR OUT comes before this call.)

    A status byte that is not a SAM-5 status (which no device sends for a PR command) is
    answered as CHECK CONDITION, I/O PROCESS TERMINATED, where qemu-pr-helper would forward
    it.

    :param fd: the logical unit's fd.
    :param cdb: the 16-byte CDB.
    :param data: the PR OUT parameter list.
    :returns: status, 96 sense bytes, and data-in cut to what was transferred.
    """
    outcome = pr_sg_io(fd, cdb, data)
    if outcome.errno:
        return _errno_answer(outcome.errno)
    data_in = cdb[0] != 0x5F
    size = _DATA_SIZE if data_in else len(data)
    status, sense, transferred = map_outcome(outcome, size, qemu_7_2=True)
    try:
        scsi_status = ScsiStatus(status)
    except ValueError:
        return ScsiResult(ScsiStatus.CHECK_CONDITION, _errno_answer(errno.EIO).sense)
    if not data_in:
        return ScsiResult(scsi_status, sense)
    transferred = max(0, min(transferred, _DATA_SIZE))
    return ScsiResult(scsi_status, sense, outcome.data[:transferred])
