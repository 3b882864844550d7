# SPDX-License-Identifier: MIT
"""Named SCSI constants: opcodes, service actions, PR types, sense keys and ASC/ASCQ pairs.

Every enum here is an :class:`enum.IntEnum` or :class:`enum.IntFlag`, so members compare equal to
the integers on the wire.  Values that the wire can carry but SPC-4 reserves are *not* members;
codecs keep them as plain :class:`int` so that the engine, not the decoder, decides what to answer.
"""

from __future__ import annotations

import enum

__all__ = [
    "Asc",
    "HostStatus",
    "MaintenanceInAction",
    "Opcode",
    "PrInAction",
    "PrOutAction",
    "PrScope",
    "PrType",
    "PrTypeMask",
    "ProtocolId",
    "SenseKey",
    "ServiceActionIn16",
]


class Opcode(enum.IntEnum):
    """Operation codes (CDB byte 0) that matter to a PR device server (SPC-4, SBC-3).

    The list covers every command named by the reservation-conflict table (docs/reference/spc4-pr.md
    §4). Short aliases (``READ_CAPACITY``, ``MODE_SENSE``, ``SYNCHRONIZE_CACHE``,
    ``READ_CAPACITY_16``) name the same values as their long forms.
    """

    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    FORMAT_UNIT = 0x04
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    RESERVE_6 = 0x16
    RELEASE_6 = 0x17
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    RECEIVE_DIAGNOSTIC_RESULTS = 0x1C
    SEND_DIAGNOSTIC = 0x1D
    PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    WRITE_AND_VERIFY_10 = 0x2E
    VERIFY_10 = 0x2F
    PRE_FETCH_10 = 0x34
    SYNCHRONIZE_CACHE_10 = 0x35
    READ_DEFECT_DATA_10 = 0x37
    WRITE_BUFFER = 0x3B
    READ_BUFFER = 0x3C
    READ_LONG_10 = 0x3E
    WRITE_LONG_10 = 0x3F
    WRITE_SAME_10 = 0x41
    UNMAP = 0x42
    LOG_SELECT = 0x4C
    LOG_SENSE = 0x4D
    MODE_SELECT_10 = 0x55
    RESERVE_10 = 0x56
    RELEASE_10 = 0x57
    MODE_SENSE_10 = 0x5A
    PERSISTENT_RESERVE_IN = 0x5E
    PERSISTENT_RESERVE_OUT = 0x5F
    EXTENDED_COPY = 0x83
    RECEIVE_COPY_RESULTS = 0x84
    ACCESS_CONTROL_IN = 0x86
    ACCESS_CONTROL_OUT = 0x87
    READ_16 = 0x88
    COMPARE_AND_WRITE = 0x89
    WRITE_16 = 0x8A
    READ_ATTRIBUTE = 0x8C
    WRITE_ATTRIBUTE = 0x8D
    WRITE_AND_VERIFY_16 = 0x8E
    VERIFY_16 = 0x8F
    PRE_FETCH_16 = 0x90
    SYNCHRONIZE_CACHE_16 = 0x91
    WRITE_SAME_16 = 0x93
    SERVICE_ACTION_IN_16 = 0x9E
    SERVICE_ACTION_OUT_16 = 0x9F
    REPORT_LUNS = 0xA0
    SECURITY_PROTOCOL_IN = 0xA2
    MAINTENANCE_IN = 0xA3
    MAINTENANCE_OUT = 0xA4
    READ_12 = 0xA8
    WRITE_12 = 0xAA
    SERVICE_ACTION_IN_12 = 0xAB
    WRITE_AND_VERIFY_12 = 0xAE
    VERIFY_12 = 0xAF
    SECURITY_PROTOCOL_OUT = 0xB5
    READ_DEFECT_DATA_12 = 0xB7

    # Aliases (the same values under their everyday names).
    READ_CAPACITY = 0x25
    MODE_SENSE = 0x1A
    SYNCHRONIZE_CACHE = 0x35
    READ_CAPACITY_16 = 0x9E  # SERVICE ACTION IN(16), service action 10h

    @property
    def group(self) -> int:
        """The CDB group code (bits 7-5 of byte 0), which fixes the CDB size."""
        return int(self) >> 5


class ServiceActionIn16(enum.IntEnum):
    """Service actions of SERVICE ACTION IN(16) (opcode 9Eh, SBC-3)."""

    READ_CAPACITY_16 = 0x10
    READ_LONG_16 = 0x11
    GET_LBA_STATUS = 0x12


class MaintenanceInAction(enum.IntEnum):
    """Service actions of MAINTENANCE IN (opcode A3h, SPC-4 §6.1)."""

    REPORT_IDENTIFYING_INFORMATION = 0x05
    REPORT_TARGET_PORT_GROUPS = 0x0A
    REPORT_ALIASES = 0x0B
    REPORT_SUPPORTED_OPERATION_CODES = 0x0C
    REPORT_SUPPORTED_TMFS = 0x0D
    REPORT_PRIORITY = 0x0E
    REPORT_TIMESTAMP = 0x0F
    MANAGEMENT_PROTOCOL_IN = 0x10


class PrInAction(enum.IntEnum):
    """PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1); 04h-1Fh are reserved."""

    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class PrOutAction(enum.IntEnum):
    """PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2); 09h-1Fh are reserved."""

    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07
    REPLACE_LOST_RESERVATION = 0x08


class PrScope(enum.IntEnum):
    """The SCOPE nibble (SPC-4 §6.15.3.2).  Only ``LU_SCOPE`` is meaningful; 3h-Fh are reserved."""

    LU_SCOPE = 0x0
    EXTENT_SCOPE = 0x1  # obsolete
    ELEMENT_SCOPE = 0x2  # obsolete


class PrType(enum.IntEnum):
    """Persistent reservation TYPE values (SPC-4 §6.15.3.3).

    0h, 2h and 4h are obsolete and 9h-Fh reserved; they are not members.
    """

    WE = 0x1
    EA = 0x3
    WE_RO = 0x5
    EA_RO = 0x6
    WE_AR = 0x7
    EA_AR = 0x8

    # Long aliases, as SPC-4 spells the types.
    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8

    @property
    def all_registrants(self) -> bool:
        """True for the "all registrants" types (7, 8): every registrant is a holder."""
        return self in (PrType.WE_AR, PrType.EA_AR)

    @property
    def registrants_only(self) -> bool:
        """True for the "registrants only" types (5, 6)."""
        return self in (PrType.WE_RO, PrType.EA_RO)

    @property
    def exclusive_access(self) -> bool:
        """True for the exclusive-access types (3, 6, 8), which also block reads."""
        return self in (PrType.EA, PrType.EA_RO, PrType.EA_AR)

    @property
    def description(self) -> str:
        """The type as ``sg_persist`` prints it (``Write Exclusive, registrants only``)."""
        return _TYPE_TEXT[self]

    @property
    def mask(self) -> PrTypeMask:
        """The REPORT CAPABILITIES type-mask bit for this type."""
        return _TYPE_MASK[self]


_TYPE_TEXT = {
    PrType.WE: "Write Exclusive",
    PrType.EA: "Exclusive Access",
    PrType.WE_RO: "Write Exclusive, registrants only",
    PrType.EA_RO: "Exclusive Access, registrants only",
    PrType.WE_AR: "Write Exclusive, all registrants",
    PrType.EA_AR: "Exclusive Access, all registrants",
}


class PrTypeMask(enum.IntFlag):
    """PERSISTENT RESERVATION TYPE MASK of REPORT CAPABILITIES, bytes 4-5 as a 16-bit value.

    SPC-4 §6.15.4: byte 4 holds WR_EX_AR 80h, EX_AC_RO 40h, WR_EX_RO 20h, EX_AC 08h, WR_EX 02h;
    byte 5 holds EX_AC_AR 01h.
    """

    EX_AC_AR = 0x0001
    WR_EX = 0x0200
    EX_AC = 0x0800
    WR_EX_RO = 0x2000
    EX_AC_RO = 0x4000
    WR_EX_AR = 0x8000

    @classmethod
    def of(cls, *types: PrType) -> PrTypeMask:
        """The mask with the bit of each of *types* set."""
        mask = cls(0)
        for pr_type in types:
            mask |= PrType(pr_type).mask
        return mask

    @property
    def types(self) -> frozenset[PrType]:
        """The PR types whose bit is set."""
        return frozenset(t for t, bit in _TYPE_MASK.items() if bit in self)


_TYPE_MASK = {
    PrType.WE: PrTypeMask.WR_EX,
    PrType.EA: PrTypeMask.EX_AC,
    PrType.WE_RO: PrTypeMask.WR_EX_RO,
    PrType.EA_RO: PrTypeMask.EX_AC_RO,
    PrType.WE_AR: PrTypeMask.WR_EX_AR,
    PrType.EA_AR: PrTypeMask.EX_AC_AR,
}


class ProtocolId(enum.IntEnum):
    """PROTOCOL IDENTIFIER values (SPC-4 §7.6.1, table "PROTOCOL IDENTIFIER values")."""

    FCP = 0x0
    SPI = 0x1
    SSA = 0x2
    IEEE_1394 = 0x3
    SRP = 0x4
    ISCSI = 0x5
    SAS = 0x6
    ADT = 0x7
    ATA = 0x8
    UAS = 0x9
    SOP = 0xA
    NONE = 0xF


class SenseKey(enum.IntEnum):
    """The 4-bit SENSE KEY (SPC-4 §4.5.6); every value 0h-Fh is a member."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    OBSOLETE = 0xC  # was EQUAL
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF

    @property
    def description(self) -> str:
        """The key as SPC-4 names it (``ILLEGAL REQUEST``)."""
        return self.name.replace("_", " ")


class Asc(enum.IntEnum):
    """Named ADDITIONAL SENSE CODE / QUALIFIER pairs, valued ``(asc << 8) | ascq``.

    Only the pairs qompr produces or must recognise are listed (QEMU's ``SENSE_CODE`` table plus
    the ones SPC-4 persistent reservations use).  Names follow SPC-4 Annex D.
    """

    NO_ADDITIONAL_SENSE = 0x0000
    IO_PROCESS_TERMINATED = 0x0006
    LUN_NOT_READY_CAUSE_NOT_REPORTABLE = 0x0400
    LUN_NOT_READY_MANUAL_INTERVENTION_REQUIRED = 0x0403
    LUN_DOES_NOT_RESPOND_TO_SELECTION = 0x0500
    LUN_COMMUNICATION_FAILURE = 0x0800
    UNRECOVERED_READ_ERROR = 0x1100
    PARAMETER_LIST_LENGTH_ERROR = 0x1A00
    INVALID_COMMAND_OPERATION_CODE = 0x2000
    LBA_OUT_OF_RANGE = 0x2100
    INVALID_FIELD_IN_CDB = 0x2400
    LUN_NOT_SUPPORTED = 0x2500
    INVALID_FIELD_IN_PARAMETER_LIST = 0x2600
    PARAMETER_NOT_SUPPORTED = 0x2601
    PARAMETER_VALUE_INVALID = 0x2602
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = 0x2604
    WRITE_PROTECTED = 0x2700
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = 0x2707
    POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED = 0x2900
    POWER_ON_OCCURRED = 0x2901
    SCSI_BUS_RESET_OCCURRED = 0x2902
    I_T_NEXUS_LOSS_OCCURRED = 0x2907
    PARAMETERS_CHANGED = 0x2A00
    RESERVATIONS_PREEMPTED = 0x2A03
    RESERVATIONS_RELEASED = 0x2A04
    REGISTRATIONS_PREEMPTED = 0x2A05
    COMMAND_SEQUENCE_ERROR = 0x2C00
    COMMAND_TIMEOUT_DURING_PROCESSING = 0x2E02
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = 0x2F00
    COMMANDS_CLEARED_BY_DEVICE_SERVER = 0x2F02
    MEDIUM_NOT_PRESENT = 0x3A00
    REPORTED_LUNS_DATA_HAS_CHANGED = 0x3F0E
    INTERNAL_TARGET_FAILURE = 0x4400
    PERSISTENT_RESERVATION_INFORMATION_LOST = 0x4401
    INSUFFICIENT_RESOURCES = 0x5503
    INSUFFICIENT_REGISTRATION_RESOURCES = 0x5504

    @classmethod
    def of(cls, asc: int, ascq: int) -> Asc | None:
        """The member for the pair (*asc*, *ascq*), or ``None`` if it has no name here."""
        try:
            return cls(((asc & 0xFF) << 8) | (ascq & 0xFF))
        except ValueError:
            return None

    @property
    def asc(self) -> int:
        """The ADDITIONAL SENSE CODE byte."""
        return int(self) >> 8

    @property
    def ascq(self) -> int:
        """The ADDITIONAL SENSE CODE QUALIFIER byte."""
        return int(self) & 0xFF

    @property
    def description(self) -> str:
        """The SPC-4 text, upper case (``INVALID FIELD IN CDB``)."""
        text = self.name.replace("_", " ")
        return text.replace("LUN ", "LOGICAL UNIT ").replace("I T ", "I_T ")


class HostStatus(enum.IntEnum):
    """Host (transport) status of an SG_IO request, as QEMU's ``SCSIHostStatus`` names them."""

    OK = 0x00
    NO_LUN = 0x01
    BUSY = 0x02
    TIME_OUT = 0x03
    BAD_RESPONSE = 0x04
    ABORTED = 0x05
    ERROR = 0x07
    RESET = 0x08
    TRANSPORT_DISRUPTED = 0x0E
    TARGET_FAILURE = 0x10
    RESERVATION_ERROR = 0x11
    ALLOCATION_FAILURE = 0x12
    MEDIUM_ERROR = 0x13
