# SPDX-License-Identifier: MIT
"""PERSISTENT RESERVE IN / OUT CDBs (SPC-4 §6.15, §6.16).

Design rule: decoding a CDB raises :class:`~qompr.scsi.CdbError` only for bytes that cannot be
a CDB of that opcode at all (empty, wrong opcode, shorter than 10 bytes, junk after byte 9).
Reserved service actions, reserved bits, obsolete SCOPE and TYPE values are returned as values
(plain :class:`int` where the enum has no member), because *which* sense to answer with is a
policy decision of the engine (SPC-4 versus LIO; docs/reference/spc4-pr.md §1.1, §1.2, §5).
"""

from __future__ import annotations

from typing import Self

import attrs

from qompr.scsi._constants import Opcode
from qompr.scsi._constants import PrInAction
from qompr.scsi._constants import PrOutAction
from qompr.scsi._constants import PrScope
from qompr.scsi._constants import PrType
from qompr.scsi._errors import CdbError
from qompr.scsi._sense import SenseCode
from qompr.scsi._util import as_pr_in_action
from qompr.scsi._util import as_pr_out_action
from qompr.scsi._util import as_pr_scope
from qompr.scsi._util import as_pr_type
from qompr.scsi._util import uint
from qompr.scsi._util import within
from qompr.scsi._xfer import HELPER_CDB_SIZE
from qompr.scsi._xfer import PR_CDB_SIZE

__all__ = ["PrInCdb", "PrOutCdb"]

# Reserved bits of bytes 1-6 (PR IN) and bytes 1-4 (PR OUT), as big-endian integers of those
# bytes with the defined fields cleared.
_PRIN_RESERVED_MASK = 0xE0_FF_FF_FF_FF_FF  # byte 1 bits 7-5, bytes 2-6
_PROUT_RESERVED_MASK = 0xE0_00_FF_FF  # byte 1 bits 7-5, bytes 3-4 (byte 2 is SCOPE/TYPE)


def _check_cdb(data: bytes, opcode: Opcode) -> bytes:
    """The 10 CDB bytes of *data*, which may be zero-padded up to 16 bytes."""
    data = bytes(data)
    if not data:
        raise CdbError("CDB is empty")
    if data[0] != opcode:
        raise CdbError(
            f"CDB opcode {data[0]:#04x} is not {opcode.name} ({opcode:#04x})",
            sense_code=SenseCode.INVALID_OPCODE,
        )
    if len(data) < PR_CDB_SIZE:
        raise CdbError(f"{opcode.name} CDB is {len(data)} bytes, needs {PR_CDB_SIZE}")
    if len(data) > HELPER_CDB_SIZE:
        raise CdbError(f"{opcode.name} CDB buffer is {len(data)} bytes, at most 16 allowed")
    if any(data[PR_CDB_SIZE:]):
        raise CdbError(f"{opcode.name} CDB has non-zero bytes after byte {PR_CDB_SIZE - 1}")
    return data[:PR_CDB_SIZE]


def _pad(cdb: bytes, size: int) -> bytes:
    if not PR_CDB_SIZE <= size <= HELPER_CDB_SIZE:
        raise ValueError(f"size must be in {PR_CDB_SIZE}..{HELPER_CDB_SIZE}, not {size}")
    return cdb.ljust(size, b"\0")


@attrs.frozen
class PrInCdb:
    """A PERSISTENT RESERVE IN CDB (SPC-4 §6.15.1).

    :param service_action: a :class:`PrInAction`, or a plain int for reserved values 04h-1Fh.
    :param allocation_length: bytes 7-8, the most the device server may return.
    :param control: the CONTROL byte (9).
    :param reserved: the reserved bits, as the big-endian integer of CDB bytes 1-6 with the
        SERVICE ACTION bits cleared; non-zero only in hostile or careless CDBs (CTL rejects
        them with INVALID FIELD IN CDB, LIO ignores them).
    """

    service_action: PrInAction | int = attrs.field(converter=as_pr_in_action, validator=uint(5))
    allocation_length: int = attrs.field(validator=uint(16))
    control: int = attrs.field(default=0, kw_only=True, validator=uint(8))
    reserved: int = attrs.field(default=0, kw_only=True, validator=within(_PRIN_RESERVED_MASK))

    @property
    def has_reserved_bits(self) -> bool:
        """True if any reserved CDB bit is set."""
        return self.reserved != 0

    @property
    def transfer_length(self) -> int:
        """The data-in length QEMU's ``scsi_cdb_xfer`` computes: the ALLOCATION LENGTH."""
        return self.allocation_length

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode a 10-byte CDB, or the 16-byte zero-padded buffer of the helper protocol.

        :raises CdbError: if *data* is not a PERSISTENT RESERVE IN CDB at all.
        """
        cdb = _check_cdb(data, Opcode.PERSISTENT_RESERVE_IN)
        return cls(
            cdb[1] & 0x1F,
            int.from_bytes(cdb[7:9], "big"),
            control=cdb[9],
            reserved=int.from_bytes(cdb[1:7], "big") & _PRIN_RESERVED_MASK,
        )

    def to_bytes(self, *, size: int = PR_CDB_SIZE) -> bytes:
        """Encode; *size* 16 gives the zero-padded buffer the qemu-pr-helper protocol sends."""
        head = (self.reserved | (self.service_action << 40)).to_bytes(6, "big")
        tail = self.allocation_length.to_bytes(2, "big") + bytes((self.control,))
        return _pad(bytes((Opcode.PERSISTENT_RESERVE_IN,)) + head + tail, size)


@attrs.frozen
class PrOutCdb:
    """A PERSISTENT RESERVE OUT CDB (SPC-4 §6.16.1).

    :param service_action: a :class:`PrOutAction`, or a plain int for reserved values 09h-1Fh.
    :param scope: byte 2 bits 7-4: :class:`PrScope`, or a plain int for reserved values.
    :param type: byte 2 bits 3-0: :class:`PrType`, or a plain int for obsolete and reserved
        values (0, 2, 4, 9-Fh).
    :param parameter_list_length: bytes 5-8 (32 bits, as SPC-4 defines it).  QEMU moves only
        bytes 7-8 of it (see :attr:`transfer_length`).
    :param control: the CONTROL byte (9).
    :param reserved: the reserved bits, as the big-endian integer of CDB bytes 1-4 with
        SERVICE ACTION, SCOPE and TYPE cleared.
    """

    service_action: PrOutAction | int = attrs.field(converter=as_pr_out_action, validator=uint(5))
    scope: PrScope | int = attrs.field(converter=as_pr_scope, validator=uint(4))
    type: PrType | int = attrs.field(converter=as_pr_type, validator=uint(4))
    parameter_list_length: int = attrs.field(validator=uint(32))
    control: int = attrs.field(default=0, kw_only=True, validator=uint(8))
    reserved: int = attrs.field(default=0, kw_only=True, validator=within(_PROUT_RESERVED_MASK))

    @property
    def has_reserved_bits(self) -> bool:
        """True if any reserved CDB bit is set."""
        return self.reserved != 0

    @property
    def transfer_length(self) -> int:
        """The data-out length QEMU's ``scsi_cdb_xfer`` computes: bytes 7-8 only.

        PERSISTENT RESERVE OUT is a group-2 opcode, so QEMU and qemu-pr-helper take the 16-bit
        value at bytes 7-8 and ignore bytes 5-6 of the PARAMETER LIST LENGTH
        (docs/reference/qemu-pr-helper.md §5).  The two differ when the length is 64 KiB or more.
        """
        return self.parameter_list_length & 0xFFFF

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode a 10-byte CDB, or the 16-byte zero-padded buffer of the helper protocol.

        :raises CdbError: if *data* is not a PERSISTENT RESERVE OUT CDB at all.
        """
        cdb = _check_cdb(data, Opcode.PERSISTENT_RESERVE_OUT)
        return cls(
            cdb[1] & 0x1F,
            cdb[2] >> 4,
            cdb[2] & 0x0F,
            int.from_bytes(cdb[5:9], "big"),
            control=cdb[9],
            reserved=int.from_bytes(cdb[1:5], "big") & _PROUT_RESERVED_MASK,
        )

    def to_bytes(self, *, size: int = PR_CDB_SIZE) -> bytes:
        """Encode; *size* 16 gives the zero-padded buffer the qemu-pr-helper protocol sends."""
        fields = (self.service_action << 24) | (self.scope << 20) | (self.type << 16)
        head = (self.reserved | fields).to_bytes(4, "big")
        tail = self.parameter_list_length.to_bytes(4, "big") + bytes((self.control,))
        return _pad(bytes((Opcode.PERSISTENT_RESERVE_OUT,)) + head + tail, size)
