# SPDX-License-Identifier: MIT
"""QEMU's transfer-length rule and the CDB sizes, apart from the CDB classes of
:mod:`qompr.scsi._cdb`: what moves CDBs without decoding them (the qemu-pr-helper protocol,
so every ``qompr-pr-helper``) does not build those classes.
"""

from __future__ import annotations

from qompr.scsi._errors import CdbError

__all__ = ["HELPER_CDB_SIZE", "PR_CDB_SIZE", "transfer_length"]

#: Size of the PERSISTENT RESERVE IN / OUT CDB.
PR_CDB_SIZE = 10
#: Size of the zero-padded CDB buffer of the qemu-pr-helper protocol (``PR_HELPER_CDB_SIZE``).
HELPER_CDB_SIZE = 16


def transfer_length(cdb: bytes) -> int:
    """The data length a CDB implies, by QEMU's ``scsi_cdb_xfer`` group rule
    (docs/reference/qemu-pr-helper.md §5).

    The group is the top 3 bits of byte 0:

    * group 0: byte 4;
    * groups 1 and 2: big-endian 16 bits at bytes 7-8;
    * group 4: big-endian 32 bits at bytes 10-13;
    * group 5: big-endian 32 bits at bytes 6-9;
    * groups 3, 6 and 7: ``-1``.

    Like QEMU, which reads from a zero-filled 16-byte buffer, bytes beyond the end of a short
    *cdb* read as zero.  No opcode-specific adjustment is made (READ(6) length 0 stays 0).

    :raises CdbError: if *cdb* is empty.
    """
    if not cdb:
        raise CdbError("CDB is empty")
    buf = bytes(cdb[:HELPER_CDB_SIZE]).ljust(HELPER_CDB_SIZE, b"\0")
    group = buf[0] >> 5
    if group == 0:
        return buf[4]
    if group in (1, 2):
        return int.from_bytes(buf[7:9], "big")
    if group == 4:
        return int.from_bytes(buf[10:14], "big")
    if group == 5:
        return int.from_bytes(buf[6:10], "big")
    return -1
