# SPDX-License-Identifier: MIT
"""sg3_utils' texts: exit statuses, sense data and peripheral device types.

The strings are sg3_utils' own (its ``sg_exit2str`` table, ``sg_get_sense_str`` wordings and
the ASC/ASCQ texts from T10's list), reproduced so the output matches; sg3_utils is
BSD-licensed, (c) Douglas Gilbert.  The code around them is written anew.
"""

from __future__ import annotations

import enum
import os

from qompr.cli.sglib.hexdump import hex_str
from qompr.errors import ScsiError

__all__ = [
    "PDT_TEXT",
    "Exit",
    "asc_text",
    "category_text",
    "convert_errno",
    "exit_text",
    "sense_category",
    "sense_text",
]


class Exit(enum.IntEnum):
    """Exit statuses of the sg3_utils utilities (sg3_utils(8), ``EXIT STATUS``)."""

    OK = 0
    SYNTAX_ERROR = 1
    NOT_READY = 2
    MEDIUM_HARD = 3
    ILLEGAL_REQ = 5
    UNIT_ATTENTION = 6
    DATA_PROTECT = 7
    INVALID_OP = 9
    COPY_ABORTED = 10
    ABORTED_COMMAND = 11
    MISCOMPARE = 14
    FILE_ERROR = 15
    NO_SENSE = 20
    RECOVERED = 21
    LBA_OUT_OF_RANGE = 22
    RES_CONFLICT = 24
    CONDITION_MET = 25
    BUSY = 26
    TS_FULL = 27
    ACA_ACTIVE = 28
    TASK_ABORTED = 29
    CONTRADICT = 31
    LOGIC_ERROR = 32
    TIMEOUT = 33
    TRANSPORT_ERROR = 35
    PROTECTION = 40
    OS_BASE_ERR = 50
    MALFORMED = 97
    SENSE = 98
    OTHER = 99


# sg3_utils' table of exit statuses: short text and the addition printed with -v.
_EXIT_TEXT: dict[int, tuple[str, str | None]] = {
    1: ("Syntax error", "command line options (usually)"),
    2: ("Device not ready", "type: sense key"),
    3: ("Medium or hardware error", "type: sense key (plus blank check for tape)"),
    5: ("Illegal request", "type: sense key, apart from Invalid opcode"),
    6: ("Unit attention", "type: sense key"),
    7: ("Data protect", "type: sense key; write protected media?"),
    9: ("Illegal request, Invalid opcode", "type: sense key + asc,ascq"),
    10: ("Copy aborted", "type: sense key"),
    11: ("Aborted command", "type: sense key, other than protection related (asc=0x10)"),
    14: ("Miscompare", "type: sense key"),
    15: ("File error", None),
    17: ("Illegal request with Info field", None),
    18: ("Medium or hardware error with Info", None),
    20: ("No sense key", "type: probably additional sense code"),
    21: ("Recovered error (warning)", "tye: sense key"),
    22: ("LBA out of range", None),
    24: ("Reservation conflict", "type: SCSI status"),
    25: ("Condition met", "type: SCSI status"),
    26: ("Busy", "type: SCSI status"),
    27: ("Task set full", "type: SCSI status"),
    28: ("ACA aactive", "type: SCSI status"),
    29: ("Task aborted", "type: SCSI status"),
    31: ("Contradict", "command line options contradict or select bad mode"),
    32: ("Logic error", "unexpected situation, contact author"),
    33: ("SCSI command timeout", None),
    40: ("Aborted command, protection error", None),
    41: ("Aborted command, protection error with Info field", None),
    50: ("An OS error occurred", "(errno > 46 or negative)"),
    97: ("Malformed SCSI command", "trouble building command"),
    98: ("Some other sense error", "try '-v' option for more information"),
    99: ("Some other error", "possible transport of driver issue"),
}

_SENSE_KEY_TEXT = (
    "No Sense",
    "Recovered Error",
    "Not Ready",
    "Medium Error",
    "Hardware Error",
    "Illegal Request",
    "Unit Attention",
    "Data Protect",
    "Blank Check",
    "Vendor Specific",
    "Copy Aborted",
    "Aborted Command",
    "Equal",
    "Volume Overflow",
    "Miscompare",
    "Completed",
)

# sg3_utils' wording of the ASC/ASCQ pairs a PR device server reports.
_ASC_TEXT = {
    0x0000: "No additional sense information",
    0x0006: "I/O process terminated",
    0x0400: "Logical unit not ready, cause not reportable",
    0x0401: "Logical unit is in process of becoming ready",
    0x0402: "Logical unit not ready, initializing command required",
    0x0403: "Logical unit not ready, manual intervention required",
    0x0404: "Logical unit not ready, format in progress",
    0x0407: "Logical unit not ready, operation in progress",
    0x0409: "Logical unit not ready, self-test in progress",
    0x041B: "Logical unit not ready, sanitize in progress",
    0x0016: "operation in progress",
    0x2903: "Bus device reset function occurred",
    0x2A01: "Mode parameters changed",
    0x3A01: "Medium not present - tray closed",
    0x3A02: "Medium not present - tray open",
    0x3F03: "Inquiry data has changed",
    0x0500: "Logical unit does not respond to selection",
    0x0800: "Logical unit communication failure",
    0x1100: "Unrecovered read error",
    0x1A00: "Parameter list length error",
    0x2000: "Invalid command operation code",
    0x2100: "Logical block address out of range",
    0x2400: "Invalid field in cdb",
    0x2500: "Logical unit not supported",
    0x2600: "Invalid field in parameter list",
    0x2601: "Parameter not supported",
    0x2602: "Parameter value invalid",
    0x2604: "Invalid release of persistent reservation",
    0x2700: "Write protected",
    0x2707: "Space allocation failed write protect",
    0x2900: "Power on, reset, or bus device reset occurred",
    0x2901: "Power on occurred",
    0x2902: "SCSI bus reset occurred",
    0x2907: "I_T nexus loss occurred",
    0x2A00: "Parameters changed",
    0x2A03: "Reservations preempted",
    0x2A04: "Reservations released",
    0x2A05: "Registrations preempted",
    0x2C00: "Command sequence error",
    0x2E02: "Command timeout during processing",
    0x2F00: "Commands cleared by another initiator",
    0x2F02: "Commands cleared by device server",
    0x3A00: "Medium not present",
    0x3F0E: "Reported luns data has changed",
    0x4400: "Internal target failure",
    0x4401: "Persistent reservation information lost",
    0x5503: "Insufficient resources",
    0x5504: "Insufficient registration resources",
}

PDT_TEXT = (
    "disk",
    "tape",
    "printer",
    "processor",
    "write once optical disk",
    "cd/dvd",
    "scanner",
    "optical memory device",
    "medium changer",
    "communications",
    "graphics [0xa]",
    "graphics [0xb]",
    "storage array controller",
    "enclosure services device",
    "simplified direct access device",
    "optical card reader/writer device",
    "bridge controller commands",
    "object based storage",
    "automation/driver interface",
    "security manager device",
    "host managed zoned block",
    *(f"0x{pdt:x}" for pdt in range(0x15, 0x1E)),
    "well known logical unit",
    "unknown or no device type",
)


def asc_text(asc: int, ascq: int) -> str:
    text = _ASC_TEXT.get((asc << 8) | ascq)
    if text is not None:
        return f"Additional sense: {text}"
    vendor = "vendor specific " if asc >= 0x80 else ""
    return f"{vendor}ASC={asc:02x}, ASCQ={ascq:02x} (hex)"


def sense_text(sense: bytes, *, raw: bool = False) -> str:
    """The sense description sg3_utils prints (``sg_get_sense_str``): format, sense key and
    additional sense; for fixed format the INFORMATION field, the field replaceable unit
    code and the sense-key specific field of the keys a command like ours ends with (progress,
    field pointer, unit attention queue overflow); then with *raw* the bytes.

    Sense descriptors of the descriptor format are not described (sg3_utils prints each).
    """
    if not sense:
        return ""
    code = sense[0] & 0x7F
    if code not in (0x70, 0x71, 0x72, 0x73):
        return f"Unrecognized sense response code 0x{code:x}\n" + hex_str(sense, "    ")
    when = "<<<deferred>>>" if code in (0x71, 0x73) else "current"
    if code >= 0x72:
        key = sense[1] & 0x0F if len(sense) > 1 else 0
        text = f"Descriptor format, {when}; Sense key: {_SENSE_KEY_TEXT[key]}\n"
        asc = sense[2] if len(sense) > 2 else 0
        ascq = sense[3] if len(sense) > 3 else 0
        text += asc_text(asc, ascq) + "\n"
    else:
        key = sense[2] & 0x0F if len(sense) > 2 else 0
        text = f"Fixed format, {when}; Sense key: {_SENSE_KEY_TEXT[key]}\n"
        text += _fixed_fields(sense)
    if raw:
        text += f" Raw sense data (in hex), sb_len={len(sense)}"
        if len(sense) > 7 and 0x70 <= sense[0] <= 0x73:  # as sg3_utils tests it: not VALID
            embedded = 8 + sense[7]
            text += f", embedded_len={embedded}\n"
        else:
            embedded = len(sense)
            text += "\n"
        # sg3_utils dumps the length the sense claims, past its buffer if need be.
        text += hex_str(sense[:embedded].ljust(embedded, b"\0"), "        ")
    return text


def _fixed_fields(sense: bytes) -> str:
    """What ``sg_get_sense_str`` prints of fixed-format sense after the sense key."""
    limit = min(len(sense), 8 + sense[7]) if len(sense) > 7 else len(sense)
    text = ""
    if limit > 12:
        text += asc_text(sense[12], sense[13] if limit > 13 else 0) + "\n"
    flags = sense[2] & 0xE0 if len(sense) > 2 else 0
    if (sense[0] & 0x80 or flags) and len(sense) > 6:
        info = int.from_bytes(sense[3:7], "big")
        line = "  " + ("" if sense[0] & 0x80 else "Valid=0, ") + f"Info fld=0x{info:x} [{info}] "
        line += "".join(f" {name}" for bit, name in _FLAG_NAMES if flags & bit)
        text += line + "\n"
    if limit > 14 and sense[14]:
        text += f"  Field replaceable unit code: {sense[14]}\n"
    if limit > 17 and sense[15] & 0x80:
        text += _sense_key_specific(sense[2] & 0x0F, sense[15:18])
    return text


_FLAG_NAMES = ((0x80, "FMK"), (0x40, "EOM"), (0x20, "ILI"))


def _sense_key_specific(key: int, sks: bytes) -> str:
    """The SENSE KEY SPECIFIC field (SPC-4 §4.5.2.4) of the keys sg3_utils' text covers here."""
    value = int.from_bytes(sks[1:3], "big")
    if key in (0x0, 0x2):  # NO SENSE, NOT READY: progress indication
        percent, rest = divmod(value * 100, 65536)
        return f"  Progress indication: {percent}.{rest // 656:02d}%\n"
    if key == 0x5:  # ILLEGAL REQUEST: field pointer
        where = "Command" if sks[0] & 0x40 else "Data parameters"
        bit = f" bit {sks[0] & 0x07}" if sks[0] & 0x08 else ""
        return f"  Sense Key Specific: Error in {where}: byte {value}{bit}\n"
    if key == 0x6:  # UNIT ATTENTION: queue overflow
        return f"  Unit attention condition queue: overflow flag is {sks[0] & 0x01}\n"
    return ""


def exit_text(status: int, *, longer: bool = False) -> str | None:
    """sg3_utils' ``sg_exit2str``: the text of an exit status, ``None`` if it has none."""
    if Exit.OS_BASE_ERR < status < Exit.MALFORMED:
        text = os.strerror(status - Exit.OS_BASE_ERR)
        return f"OS error: {text}" if longer else text
    entry = _EXIT_TEXT.get(status)
    if entry is None:
        return None
    name, more = entry
    return f"{name}, {more}" if longer and more else name


def category_text(status: int, verbose: int) -> str:
    """sg3_utils' ``sg_get_category_sense_str``."""
    text = exit_text(status, longer=verbose > 0)
    if text is not None:
        return text
    text = f"Sense category: {status}"
    return text if verbose else f"{text}, try '-v' option for more information"


def convert_errno(err: int) -> int:
    """sg3_utils' ``sg_convert_errno``: 50 + errno, 50 for errno 47 and above."""
    if err <= 0:
        return Exit.OS_BASE_ERR if err < 0 else 0
    return Exit.OS_BASE_ERR + err if err < Exit.MALFORMED - Exit.OS_BASE_ERR else Exit.OS_BASE_ERR


def sense_category(sense: bytes) -> int:
    """sg3_utils' ``sg_err_category_sense``."""
    if len(sense) < 3 or (sense[0] & 0x7F) not in (0x70, 0x71, 0x72, 0x73):
        return Exit.SENSE
    from qompr.scsi import SenseData  # the codec, for a command that has sense only

    try:
        decoded = SenseData.from_bytes(sense)
    except ScsiError:
        return Exit.SENSE
    key, asc, ascq = int(decoded.key), decoded.asc, decoded.ascq
    by_key = {
        0x0: Exit.NO_SENSE,
        0x1: Exit.RECOVERED,
        0x2: Exit.NOT_READY,
        0x3: Exit.MEDIUM_HARD,
        0x4: Exit.MEDIUM_HARD,
        0x8: Exit.MEDIUM_HARD,
        0x6: Exit.UNIT_ATTENTION,
        0x7: Exit.DATA_PROTECT,
        0xA: Exit.COPY_ABORTED,
        0xE: Exit.MISCOMPARE,
    }
    if key == 0x5:
        if (asc, ascq) == (0x20, 0):
            return Exit.INVALID_OP
        if (asc, ascq) == (0x21, 0):
            return Exit.LBA_OUT_OF_RANGE
        return Exit.ILLEGAL_REQ
    if key == 0xB:
        return Exit.PROTECTION if asc == 0x10 else Exit.ABORTED_COMMAND
    return by_key.get(key, Exit.SENSE)
