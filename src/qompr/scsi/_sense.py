# SPDX-License-Identifier: MIT
"""Sense codes and sense data (SPC-4 §4.5), built byte for byte as QEMU's ``scsi_build_sense``.

:class:`SenseCode` is the (key, ASC, ASCQ) triple a device server picks; the named constants
are QEMU's ``SENSE_CODE`` table (``scsi/utils.c``) plus those SPC-4 persistent reservations use.
:class:`SenseData` is what travels: it decodes fixed (70h/71h) and descriptor (72h/73h) sense
and encodes exactly QEMU's two layouts.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from qompr._compat import override
from qompr.errors import ScsiError
from qompr.scsi._constants import Asc
from qompr.scsi._constants import SenseKey
from qompr.scsi._util import is_bool
from qompr.scsi._util import uint

__all__ = ["SenseCode", "SenseData", "sense_length"]

# Response codes (SPC-4 §4.5.1).
_FIXED_CURRENT = 0x70
_FIXED_DEFERRED = 0x71
_DESC_CURRENT = 0x72
_DESC_DEFERRED = 0x73

#: Size of fixed-format sense as QEMU builds it (byte 7, the additional length, is 10).
FIXED_SENSE_SIZE = 18
#: Size of descriptor-format sense as QEMU builds it (no descriptors).
DESCRIPTOR_SENSE_SIZE = 8


def sense_length(buffer: bytes) -> int:
    """How many bytes of a sense buffer hold sense: 8 + ADDITIONAL SENSE LENGTH (byte 7) for
    fixed and descriptor sense (SPC-4 §4.5), at most the buffer; all of it otherwise."""
    if len(buffer) >= 8 and buffer[0] & 0x7F in (
        _FIXED_CURRENT,
        _FIXED_DEFERRED,
        _DESC_CURRENT,
        _DESC_DEFERRED,
    ):
        return min(len(buffer), 8 + buffer[7])
    return len(buffer)


@attrs.frozen
class SenseCode:
    """A sense key with its ADDITIONAL SENSE CODE and QUALIFIER.

    The named class constants (``SenseCode.INVALID_FIELD`` …) are QEMU's ``SENSE_CODE`` names;
    :attr:`name` gives that name back.

    :param key: the sense key.
    :param asc: the ADDITIONAL SENSE CODE byte.
    :param ascq: the ADDITIONAL SENSE CODE QUALIFIER byte.
    """

    key: SenseKey = attrs.field(converter=SenseKey)
    asc: int = attrs.field(validator=uint(8))
    ascq: int = attrs.field(validator=uint(8))

    # QEMU's SENSE_CODE table (scsi/utils.c); docs/reference/qemu-pr-helper.md §9.
    NO_SENSE: ClassVar[SenseCode]
    NOT_READY: ClassVar[SenseCode]
    LUN_NOT_READY: ClassVar[SenseCode]
    NO_MEDIUM: ClassVar[SenseCode]
    READ_ERROR: ClassVar[SenseCode]
    TARGET_FAILURE: ClassVar[SenseCode]
    INVALID_OPCODE: ClassVar[SenseCode]
    LBA_OUT_OF_RANGE: ClassVar[SenseCode]
    INVALID_FIELD: ClassVar[SenseCode]
    LUN_NOT_SUPPORTED: ClassVar[SenseCode]
    INVALID_PARAM: ClassVar[SenseCode]
    INVALID_PARAM_VALUE: ClassVar[SenseCode]
    INVALID_PARAM_LEN: ClassVar[SenseCode]
    SCSI_BUS_RESET: ClassVar[SenseCode]
    RESET: ClassVar[SenseCode]
    WRITE_PROTECTED: ClassVar[SenseCode]
    SPACE_ALLOC_FAILED: ClassVar[SenseCode]
    IO_ERROR: ClassVar[SenseCode]
    LUN_NOT_RESPONDING: ClassVar[SenseCode]
    LUN_COMM_FAILURE: ClassVar[SenseCode]
    I_T_NEXUS_LOSS: ClassVar[SenseCode]
    COMMAND_TIMEOUT: ClassVar[SenseCode]
    COMMAND_ABORTED: ClassVar[SenseCode]
    # SPC-4 persistent reservations; docs/reference/spc4-pr.md §0.
    INVALID_RELEASE: ClassVar[SenseCode]
    INSUFFICIENT_REGISTRATION_RESOURCES: ClassVar[SenseCode]
    RESERVATIONS_PREEMPTED: ClassVar[SenseCode]
    RESERVATIONS_RELEASED: ClassVar[SenseCode]
    REGISTRATIONS_PREEMPTED: ClassVar[SenseCode]
    PR_INFORMATION_LOST: ClassVar[SenseCode]
    NOT_READY_LUN_COMM_FAILURE: ClassVar[SenseCode]

    @classmethod
    def of(cls, key: SenseKey, additional: Asc) -> SenseCode:
        """The code for *key* with the named ASC/ASCQ pair *additional*."""
        return cls(key, additional.asc, additional.ascq)

    @classmethod
    def by_name(cls, name: str) -> SenseCode:
        """The named constant called *name* (``"INVALID_FIELD"``).

        :raises KeyError: if there is no such name.
        """
        return _BY_NAME[name]

    @classmethod
    def names(cls) -> dict[str, SenseCode]:
        """A fresh mapping of every constant's name to its code, in table order."""
        return dict(_BY_NAME)

    @property
    def name(self) -> str | None:
        """The constant's name (``"INVALID_FIELD"``), or ``None`` for an unnamed code."""
        return _NAME_OF.get(self)

    @property
    def additional(self) -> Asc | None:
        """The ASC/ASCQ pair as a named :class:`Asc`, or ``None`` if it has no name here."""
        return Asc.of(self.asc, self.ascq)

    def to_sense_data(self, *, deferred: bool = False) -> SenseData:
        """This code as a :class:`SenseData` value."""
        return SenseData(self.key, self.asc, self.ascq, deferred=deferred)

    def to_bytes(self, *, fixed: bool = True) -> bytes:
        """Sense bytes for this code, in QEMU's fixed (18 bytes) or descriptor (8 bytes) form."""
        return self.to_sense_data().to_bytes(fixed=fixed)

    @override
    def __str__(self) -> str:
        text = f"{self.key.description}, ASC/ASCQ {self.asc:02X}h/{self.ascq:02X}h"
        additional = self.additional
        if additional is not None:
            text += f" ({additional.description})"
        return text


_TABLE: dict[str, tuple[SenseKey, int, int]] = {
    "NO_SENSE": (SenseKey.NO_SENSE, 0x00, 0x00),
    "NOT_READY": (SenseKey.NOT_READY, 0x04, 0x00),
    "LUN_NOT_READY": (SenseKey.NOT_READY, 0x04, 0x03),
    "NO_MEDIUM": (SenseKey.NOT_READY, 0x3A, 0x00),
    "READ_ERROR": (SenseKey.MEDIUM_ERROR, 0x11, 0x00),
    "TARGET_FAILURE": (SenseKey.HARDWARE_ERROR, 0x44, 0x00),
    "INVALID_OPCODE": (SenseKey.ILLEGAL_REQUEST, 0x20, 0x00),
    "LBA_OUT_OF_RANGE": (SenseKey.ILLEGAL_REQUEST, 0x21, 0x00),
    "INVALID_FIELD": (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00),
    "LUN_NOT_SUPPORTED": (SenseKey.ILLEGAL_REQUEST, 0x25, 0x00),
    "INVALID_PARAM": (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00),
    "INVALID_PARAM_VALUE": (SenseKey.ILLEGAL_REQUEST, 0x26, 0x01),
    "INVALID_PARAM_LEN": (SenseKey.ILLEGAL_REQUEST, 0x1A, 0x00),
    "SCSI_BUS_RESET": (SenseKey.UNIT_ATTENTION, 0x29, 0x02),
    "RESET": (SenseKey.UNIT_ATTENTION, 0x29, 0x00),
    "WRITE_PROTECTED": (SenseKey.DATA_PROTECT, 0x27, 0x00),
    "SPACE_ALLOC_FAILED": (SenseKey.DATA_PROTECT, 0x27, 0x07),
    "IO_ERROR": (SenseKey.ABORTED_COMMAND, 0x00, 0x06),
    "LUN_NOT_RESPONDING": (SenseKey.ABORTED_COMMAND, 0x05, 0x00),
    "LUN_COMM_FAILURE": (SenseKey.ABORTED_COMMAND, 0x08, 0x00),
    "I_T_NEXUS_LOSS": (SenseKey.ABORTED_COMMAND, 0x29, 0x07),
    "COMMAND_TIMEOUT": (SenseKey.ABORTED_COMMAND, 0x2E, 0x02),
    "COMMAND_ABORTED": (SenseKey.ABORTED_COMMAND, 0x2F, 0x02),
    # docs/reference/spc4-pr.md §0 "Status and sense constants".
    "INVALID_RELEASE": (SenseKey.ILLEGAL_REQUEST, 0x26, 0x04),
    "INSUFFICIENT_REGISTRATION_RESOURCES": (SenseKey.ILLEGAL_REQUEST, 0x55, 0x04),
    "RESERVATIONS_PREEMPTED": (SenseKey.UNIT_ATTENTION, 0x2A, 0x03),
    "RESERVATIONS_RELEASED": (SenseKey.UNIT_ATTENTION, 0x2A, 0x04),
    "REGISTRATIONS_PREEMPTED": (SenseKey.UNIT_ATTENTION, 0x2A, 0x05),
    "PR_INFORMATION_LOST": (SenseKey.DATA_PROTECT, 0x44, 0x01),
    # LIO's TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE: NOT READY, not QEMU's ABORTED COMMAND.
    "NOT_READY_LUN_COMM_FAILURE": (SenseKey.NOT_READY, 0x08, 0x00),
}

_BY_NAME: dict[str, SenseCode] = {}
_NAME_OF: dict[SenseCode, str] = {}
for _name, (_key, _asc, _ascq) in _TABLE.items():
    _code = SenseCode(_key, _asc, _ascq)
    setattr(SenseCode, _name, _code)
    _BY_NAME[_name] = _code
    _NAME_OF.setdefault(_code, _name)
del _name, _key, _asc, _ascq, _code


@attrs.frozen
class SenseData:
    """Sense data reduced to what a PR manager reports: key, ASC, ASCQ, current or deferred.

    Decoding accepts fixed and descriptor formats alike, so values compare equal whichever
    format carried them; encoding picks the format (:meth:`to_bytes`).

    :param key: the sense key.
    :param asc: the ADDITIONAL SENSE CODE byte.
    :param ascq: the ADDITIONAL SENSE CODE QUALIFIER byte.
    :param deferred: a deferred error (response code 71h/73h) instead of a current one.
    """

    key: SenseKey = attrs.field(converter=SenseKey)
    asc: int = attrs.field(validator=uint(8))
    ascq: int = attrs.field(validator=uint(8))
    deferred: bool = attrs.field(default=False, kw_only=True, validator=is_bool)

    @property
    def code(self) -> SenseCode:
        """The (key, ASC, ASCQ) triple as a :class:`SenseCode`."""
        return SenseCode(self.key, self.asc, self.ascq)

    @classmethod
    def from_bytes(cls, data: bytes) -> SenseData:
        """Decode fixed (70h/71h) or descriptor (72h/73h) sense data.

        Short buffers are read as Linux's ``scsi_normalize_sense`` does: the additional length
        limits what is looked at, and an ASC or ASCQ beyond the end reads as 0.  At least the
        byte holding the sense key must be present.

        :param data: the sense buffer (trailing bytes beyond the sense are ignored).
        :raises ScsiError: for an empty buffer, a response code other than 70h-73h, or a buffer
            too short to hold the sense key.
        """
        data = bytes(data)
        if not data:
            raise ScsiError("Sense data is empty")
        response_code = data[0] & 0x7F  # bit 7 is VALID in fixed format, reserved otherwise
        if len(data) > 7:  # SPC-4 §4.5.2.1 / §4.5.3: byte 7 is the ADDITIONAL SENSE LENGTH
            data = data[: 8 + data[7]]
        if response_code in (_FIXED_CURRENT, _FIXED_DEFERRED):
            # SPC-4 §4.5.3: key in byte 2 bits 3-0, ASC byte 12, ASCQ byte 13.
            if len(data) < 3:
                raise ScsiError("Fixed-format sense data is too short to hold a sense key")
            key, asc_at = data[2] & 0x0F, 12
        elif response_code in (_DESC_CURRENT, _DESC_DEFERRED):
            # SPC-4 §4.5.2: key in byte 1 bits 3-0, ASC byte 2, ASCQ byte 3.
            if len(data) < 2:
                raise ScsiError("Descriptor-format sense data is too short to hold a sense key")
            key, asc_at = data[1] & 0x0F, 2
        else:
            raise ScsiError(f"Unsupported sense response code {response_code:#04x}")
        asc = data[asc_at] if len(data) > asc_at else 0
        ascq = data[asc_at + 1] if len(data) > asc_at + 1 else 0
        deferred = response_code in (_FIXED_DEFERRED, _DESC_DEFERRED)
        return cls(SenseKey(key), asc, ascq, deferred=deferred)

    def to_bytes(self, *, fixed: bool = True) -> bytes:
        """Encode as QEMU's ``scsi_build_sense`` does.

        :param fixed: fixed format (18 bytes: 70h, key at 2, byte 7 = 10, ASC at 12, ASCQ at 13)
            if true, else descriptor format (8 bytes: 72h, key, ASC, ASCQ, four zero bytes).
            A deferred error uses 71h / 73h.
        """
        if fixed:
            out = bytearray(FIXED_SENSE_SIZE)
            out[0] = _FIXED_DEFERRED if self.deferred else _FIXED_CURRENT
            out[2] = self.key
            out[7] = FIXED_SENSE_SIZE - 8
            out[12] = self.asc
            out[13] = self.ascq
            return bytes(out)
        first = _DESC_DEFERRED if self.deferred else _DESC_CURRENT
        return bytes((first, self.key, self.asc, self.ascq, 0, 0, 0, 0))

    @override
    def __str__(self) -> str:
        text = str(self.code)
        return f"{text} [deferred]" if self.deferred else text
