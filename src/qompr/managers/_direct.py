# SPDX-License-Identifier: MIT
"""``pr-manager-direct``: PERSISTENT RESERVE IN/OUT straight to the device with SG_IO.

What qemu-pr-helper does for a non-multipath fd (``do_sgio_worker``), as a manager a
privileged process can use in-process: a PR OUT on an fd opened read-only is refused with
INVALID COMMAND OPERATION CODE without reaching the device; PR IN goes out with an 8192-byte
buffer and the answer is cut to the CDB's allocation length; errno, host status and driver
status become status and sense as QEMU maps them (:func:`qompr.linux.sgio.map_outcome`).
Unlike qemu-pr-helper, the timeout is a property (qemu-pr-helper passes 1 ms, which the block
layer raises to 7 s on /dev/sdX and which a /dev/sgN node takes literally).
"""

from __future__ import annotations

import fcntl
import os
from typing import final

from qompr.linux.sgio import Direction
from qompr.linux.sgio import map_outcome
from qompr.linux.sgio import sg_io
from qompr.managers._base import PR_OUT
from qompr.managers._base import PRManager
from qompr.qom import IntProperty
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from qompr.scsi import transfer_length

__all__ = ["PRManagerDirect"]

#: qemu-pr-helper's data buffer (PR_HELPER_DATA_SIZE).
DATA_SIZE = 8192


@final
class PRManagerDirect(PRManager, qom_type="pr-manager-direct"):
    """Executes PR commands on the fd itself (needs CAP_SYS_RAWIO for a real device)."""

    timeout = IntProperty(
        minimum=1,
        maximum=24 * 3600 * 1000,
        default=30_000,
        description="SG_IO timeout in milliseconds",
    )

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        cdb16 = bytes(cdb[:16]).ljust(16, b"\0")
        length = transfer_length(cdb16)
        if cdb16[0] == PR_OUT:
            # qemu-pr-helper checks the access mode before the ioctl (prh_co_entry).
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                return ScsiResult.check(SenseCode.INVALID_OPCODE)
            outcome = sg_io(
                fd, cdb16, Direction.TO_DEV, data_out=bytes(data[:length]),
                cmd_len=16, timeout_ms=self.timeout,
            )  # fmt: skip
            status, sense, _ = map_outcome(outcome, len(data[:length]))
            return ScsiResult(status, sense if status == 0x02 else b"")
        outcome = sg_io(
            fd, cdb16, Direction.FROM_DEV, data_in_size=DATA_SIZE,
            cmd_len=16, timeout_ms=self.timeout,
        )  # fmt: skip
        status, sense, transferred = map_outcome(outcome, DATA_SIZE)
        if status != 0:
            return ScsiResult(status, sense if status == 0x02 else b"")
        return ScsiResult(status, b"", outcome.data[: min(transferred, max(length, 0))])
