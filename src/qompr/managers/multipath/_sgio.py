# SPDX-License-Identifier: MIT
"""TEST UNIT READY through SG_IO: the one command this manager sends itself.

qemu-pr-helper sends TEST UNIT READY on the multipath fd when libmpathpersist returns a code
that swallowed the device's sense (``mpath_reconstruct_sense``); the multipath target passes
the SG_IO on to one of its paths.  The ioctl and qemu-pr-helper's mapping of its outcome
(errno, then host status, then the driver timeout bit, then the device's status with the
kernel's sense; docs/reference/qemu-pr-helper.md §7, §8) are :mod:`qompr.linux.sgio` and
:mod:`qompr.managers._sgio`.

Fixed here: qemu-pr-helper passes a 6-byte CDB array with ``cmd_len`` 16, so the kernel reads
10 bytes past it (docs/reference/qemu-pr-helper.md §14); qompr sends ``cmd_len`` 6.
"""

from __future__ import annotations

from qompr.linux.sgio import Direction
from qompr.linux.sgio import SgIoOutcome
from qompr.linux.sgio import sg_io
from qompr.managers._sgio import map_outcome
from qompr.scsi import Opcode
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

__all__ = ["outcome_answer", "send_test_unit_ready"]

_TUR = bytes((Opcode.TEST_UNIT_READY, 0, 0, 0, 0, 0))
#: qemu-pr-helper's ``timeout`` of 1 ms; the block layer raises it to 7 s on sd/dm nodes.
_TIMEOUT_MS = 1


def outcome_answer(outcome: SgIoOutcome) -> ScsiResult:
    """The answer qemu-pr-helper derives from one data-less SG_IO outcome.

    Sense is kept (all 96 bytes, as qemu-pr-helper sends them) with CHECK CONDITION only.
    A status byte that is not a SAM status is reported as I/O PROCESS TERMINATED.
    """
    status, sense, _ = map_outcome(outcome, 0)
    try:
        scsi_status = ScsiStatus(status)
    except ValueError:
        return ScsiResult.check(SenseCode.IO_ERROR)
    if scsi_status != ScsiStatus.CHECK_CONDITION:
        return ScsiResult(scsi_status)
    return ScsiResult(scsi_status, sense)


def send_test_unit_ready(fd: int) -> ScsiResult:
    """Send TEST UNIT READY on *fd*; the answer as :func:`outcome_answer` maps it."""
    outcome = sg_io(fd, _TUR, Direction.NONE, cmd_len=len(_TUR), timeout_ms=_TIMEOUT_MS)
    return outcome_answer(outcome)
