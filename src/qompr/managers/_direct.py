# SPDX-License-Identifier: MIT
"""``pr-manager-direct``: PERSISTENT RESERVE IN/OUT straight to the device with SG_IO.

What qemu-pr-helper does for a non-multipath fd (``do_sgio_worker``), as a manager a
privileged process can use in-process: a PR OUT on an fd opened read-only is refused with
INVALID COMMAND OPERATION CODE without reaching the device; PR IN goes out with an 8192-byte
buffer and the answer is cut to the CDB's allocation length; errno, host status and driver
status become status and sense as current QEMU maps them
(:func:`qompr.managers._sgio.map_outcome`;
the daemon uses QEMU 7.2's errno table, the release it is compared with byte for byte).

Unlike qemu-pr-helper, the timeout is a property (qemu-pr-helper passes 1 ms, which the block
layer raises to 7 s on /dev/sdX and which a /dev/sgN node takes literally), and it bounds how
long the caller waits even when the kernel cannot end the command: the ioctl runs in a worker
thread, and when no answer came :data:`GRACE_MS` after the timeout the caller gets what the
kernel reports for a command it timed out and aborted (host status ``DID_TIME_OUT``), mapped
as qemu-pr-helper maps it: CHECK CONDITION, ABORTED COMMAND, COMMAND TIMEOUT DURING
PROCESSING (0B/2E/02).  That happens on real devices: LIO on Linux 6.1 deadlocks the logical
unit on PREEMPT AND ABORT through tcm_loop, and the SCSI error handler's abort waits for it
for ever (docs/vm-testbed.md).  The worker stays blocked in the kernel (uninterruptibly on
/dev/sdX, so the process cannot fully exit until the device answers); qemu-pr-helper in that
case never answers at all.
"""

from __future__ import annotations

import fcntl
import functools
import os
from typing import final

from qompr._compat import override
from qompr.linux.fdkind import sgio_cannot_block
from qompr.linux.sgio import GRACE_MS
from qompr.linux.sgio import Direction
from qompr.linux.sgio import SgIoOutcome
from qompr.linux.sgio import sg_io
from qompr.linux.sgio import sg_io_waited
from qompr.managers._base import PR_OUT
from qompr.managers._base import TEST_UNIT_READY_CDB
from qompr.managers._base import PRManager
from qompr.managers._sgio import map_outcome
from qompr.qom import IntProperty
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.scsi import sense_length
from qompr.scsi import transfer_length

__all__ = ["GRACE_MS", "PRManagerDirect"]

#: qemu-pr-helper's data buffer (PR_HELPER_DATA_SIZE).
DATA_SIZE = 8192


def _sense_bytes(buffer: bytes) -> bytes:
    # What pr-manager-helper keeps of qemu-pr-helper's buffer, so both managers answer alike.
    return buffer[: sense_length(buffer)]


@final
class PRManagerDirect(PRManager, qom_type="pr-manager-direct"):
    """Executes PR commands on the fd itself (needs CAP_SYS_RAWIO for a real device)."""

    timeout = IntProperty(
        minimum=1,
        maximum=24 * 3600 * 1000,
        default=30_000,
        description="SG_IO timeout in milliseconds (the caller waits at most 2 s more)",
    )

    @override
    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        cdb16 = bytes(cdb[:16]).ljust(16, b"\0")
        length = transfer_length(cdb16)
        if cdb16[0] == PR_OUT:
            # qemu-pr-helper checks the access mode before the ioctl (prh_co_entry).
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                return ScsiResult.check(SenseCode.INVALID_OPCODE)
            data_out = bytes(data[:length])
            outcome = self.passthrough(fd, cdb16, Direction.TO_DEV, data_out=data_out)
            status, sense, _ = map_outcome(outcome, len(data_out))
            return ScsiResult(status, _sense_bytes(sense) if status == 0x02 else b"")
        outcome = self.passthrough(fd, cdb16, Direction.FROM_DEV, data_in_size=DATA_SIZE)
        status, sense, transferred = map_outcome(outcome, DATA_SIZE)
        if status != 0:
            return ScsiResult(status, _sense_bytes(sense) if status == 0x02 else b"")
        return ScsiResult(status, b"", outcome.data[: min(transferred, max(length, 0))])

    @override
    def cannot_block(self, fd: int, cdb: bytes | None = None) -> bool:
        """True where the ioctl fails at once (not a device: a pipe, /dev/null, a local file)."""
        return sgio_cannot_block(fd)

    @override
    def test_unit_ready(self, fd: int, *, nexus: Nexus | None = None) -> ScsiResult:
        """TEST UNIT READY through SG_IO (the device knows its own nexus)."""
        outcome = self.passthrough(fd, TEST_UNIT_READY_CDB, Direction.NONE)
        status, sense, _ = map_outcome(outcome, 0)
        return ScsiResult(status, _sense_bytes(sense) if status == 0x02 else b"")

    def passthrough(
        self,
        fd: int,
        cdb: bytes,
        direction: Direction,
        *,
        data_out: bytes = b"",
        data_in_size: int = 0,
    ) -> SgIoOutcome:
        """One SG_IO as a pass-through program sends it, any command, the kernel's answer
        unmapped (errno, host and driver status, resid): for tools that judge it themselves
        as sg3_utils' do (``qompr persist``, ``qompr turs``), and under :meth:`run`.  It runs
        in a worker thread, waited for at most ``timeout`` + :data:`GRACE_MS`."""
        timeout_ms = self.timeout
        call = functools.partial(
            sg_io, fd, cdb, direction, data_out=data_out, data_in_size=data_in_size,
            cmd_len=len(cdb), timeout_ms=timeout_ms,
        )  # fmt: skip
        # DID_TIME_OUT when no answer came: qemu-pr-helper maps it to COMMAND TIMEOUT
        # (scsi_sense_from_host_status).
        return sg_io_waited(call, timeout_ms + GRACE_MS, name=f"{self.id or self.typename} SG_IO")
