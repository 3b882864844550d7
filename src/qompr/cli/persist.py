# SPDX-License-Identifier: MIT
"""``qompr persist``: sg_persist's PERSISTENT RESERVE IN/OUT command, through any qompr manager.

The command line, the text on stdout and stderr and the exit statuses are those of sg3_utils'
``sg_persist`` (version 0.67, sg3_utils 1.46, the one Debian and Ubuntu ship), so scripts and
people used to it need not learn anything new.  Three backends run the command:

* ``--device PATH`` (or a plain ``DEVICE`` operand) alone: the CDB goes straight to the device
  with the ``SG_IO`` ioctl, as sg_persist sends it (with its standard INQUIRY first unless
  ``-n``);
* ``--helper SOCKET``: through a running qemu-pr-helper (a ``pr-manager-helper`` object);
* ``--object SPEC``: through a manager created from a QEMU ``--object`` string, e.g.
  ``pr-manager-emulated,id=emu0,state=/var/lib/qompr/pr.db``; ``--initiator`` and
  ``--target-port`` give the I_T nexus the command arrives on.

With a manager the DEVICE is opened and its file descriptor handed to
:meth:`~qompr.managers.PRManager.execute`; there is no INQUIRY (a manager runs only PERSISTENT
RESERVE commands), so the output starts as ``sg_persist -n`` output does.  ``--json`` prints a
machine-readable result on stdout instead of the text.

What is reproduced from sg3_utils (the code re-implemented here; the user-visible strings —
the exit-status texts and the ASC/ASCQ wordings, themselves from T10's list — are sg3_utils'
own, reproduced so the output matches; sg3_utils is BSD-licensed, (c) Douglas Gilbert):

* GNU ``getopt_long`` parsing with sg_persist's option table (abbreviated long options,
  clustered short options, its error messages, and its exit status 0 after an unknown option);
* ``sscanf("%x")`` for keys, types and ports (hex, optional ``0x``, anything after the digits
  ignored, so ``12h`` is 12h), ``sg_get_num`` for ``--maxlen``;
* the TransportID forms of ``-X`` (hex bytes, ``sas,``/``fcp,``/``spi,``/``sbp,``/``srp,``/
  ``iqn.``, ``file=NAME`` and ``-`` for stdin) and the bytes sent for them;
* the decoding of the four PR IN responses, ``--hex`` dumps, TransportID and sense texts,
  and the exit statuses of sg3_utils(8) (24 for RESERVATION CONFLICT, 5 for ILLEGAL REQUEST,
  6 for UNIT ATTENTION, 50 + errno for OS errors, ...).

Deliberate differences: messages name ``qompr persist`` instead of ``sg_persist``; a transport
(host or driver) error of ``SG_IO`` exits with 35 rather than being taken for success; a
status other than those sg3_utils names exits with 99; and when the allocation length cuts a
READ KEYS list (``-m 20`` with three keys), sg_persist 0.67 prints ADDITIONAL LENGTH / 8 keys,
reading past the end of its response buffer (heap bytes: ``0x1110000000000000`` on LIO in
tests/vm/test_persist.py), where qompr persist prints the keys within max(allocation length,
24) bytes, the bytes the device did not send read as zeros.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import errno
import json
import os
import sys
import time
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import TextIO

import attrs
import pluggy

from qompr import __version__
from qompr.errors import ConnectError
from qompr.errors import QomprError
from qompr.errors import ScsiError
from qompr.linux.sgio import Direction
from qompr.linux.sgio import sg_io
from qompr.managers import PRManager
from qompr.options import HelpText
from qompr.options import Syntax
from qompr.options import format_error
from qompr.options import format_warning
from qompr.options import process
from qompr.plugins import get_plugin_manager
from qompr.plugins import new_tree
from qompr.qom import ObjectTree
from qompr.scsi import FullStatusDescriptor
from qompr.scsi import Nexus
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ReportCapabilitiesData
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseData
from qompr.scsi import TransportID
from qompr.scsi import decode_pr_in_data
from qompr.scsi import decode_pr_out_parameters

__all__ = [
    "PROG",
    "SG_PERSIST_VERSION",
    "Exit",
    "add_parser",
    "exit_text",
    "get_num",
    "hex_dump",
    "hex_str",
    "run",
    "scan_hex",
    "sense_text",
    "transport_id_text",
]

#: The name messages start with (sg_persist's ``ME``).
PROG = "qompr persist"
#: The sg_persist version whose behaviour is reproduced.
SG_PERSIST_VERSION = "0.67 20190913"

MX_ALLOC_LEN = 8192
MX_TIDS = 32
MX_TID_LEN = 256
_TID_MIN_LEN = 24
_SENSE_BUFF_LEN = 64
_TIMEOUT_MS = 60_000
_RDONLY_ENV = "SG_PERSIST_IN_RDONLY"


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

_PRIN_SA_TEXT = ("Read keys", "Read reservation", "Report capabilities", "Read full status")
_PROUT_SA_TEXT = (
    "Register",
    "Reserve",
    "Release",
    "Clear",
    "Preempt",
    "Preempt and abort",
    "Register and ignore existing key",
    "Register and move",
    "Replace lost reservation",
)
_PR_TYPE_TEXT = (
    "obsolete [0]",
    "Write Exclusive",
    "obsolete [2]",
    "Exclusive Access",
    "obsolete [4]",
    "Write Exclusive, registrants only",
    "Exclusive Access, registrants only",
    "Write Exclusive, all registrants",
    "Exclusive Access, all registrants",
    "obsolete [9]",
    "obsolete [0xa]",
    "obsolete [0xb]",
    "obsolete [0xc]",
    "obsolete [0xd]",
    "obsolete [0xe]",
    "obsolete [0xf]",
)

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
    0x0403: "Logical unit not ready, manual intervention required",
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

_PDT_TEXT = (
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

# -- output -----------------------------------------------------------------------------------


def _out(text: str) -> None:
    sys.stdout.write(text)


def _err(text: str) -> None:
    sys.stderr.write(text)


# -- numbers, as sg3_utils reads them --------------------------------------------------------

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_C_SPACE = " \t\n\v\f\r"


def scan_hex(text: str, bits: int = 64) -> int | None:
    """What ``sscanf(text, "%x")`` stores (``bits`` 32) or ``"%" SCNx64`` (``bits`` 64).

    Leading white space, a sign and a ``0x`` prefix are accepted; scanning stops at the first
    character that is not a hex digit and ignores the rest (so ``12h`` reads as 12h).  An
    overflow saturates, a minus sign negates modulo 2**64, and the value is then truncated to
    *bits*, as glibc does.

    :returns: the value, or ``None`` when no hex digit could be read (sscanf returning 0).
    """
    i = 0
    while i < len(text) and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < len(text) and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    if text[i : i + 2].lower() == "0x":
        digits_at = i + 2
        if digits_at >= len(text) or text[digits_at] not in _HEX_DIGITS:
            return 0  # glibc reads "0x" as 0
        i = digits_at
    start = i
    while i < len(text) and text[i] in _HEX_DIGITS:
        i += 1
    if i == start:
        return None
    value = min(int(text[start:i], 16), (1 << 64) - 1)
    if negative:
        value = -value % (1 << 64)
    return value & ((1 << bits) - 1)


def _scan_int(text: str) -> tuple[int, str] | None:
    """``sscanf("%d")``: a decimal int and the text after it, or ``None``."""
    i = 0
    while i < len(text) and text[i] in _C_SPACE:
        i += 1
    start = i
    if i < len(text) and text[i] in "+-":
        i += 1
    digits = i
    while i < len(text) and text[i].isdigit() and text[i].isascii():
        i += 1
    if i == digits:
        return None
    value = int(text[start:i])
    value = max(min(value, 0x7FFF_FFFF), -0x8000_0000)
    return value, text[i:]


def _int32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


_MULTIPLIERS = {"K": (1024, 1000), "M": (1 << 20, 1_000_000), "G": (1 << 30, 1_000_000_000)}


def get_num(text: str) -> int:
    """sg3_utils' ``sg_get_num``: decimal, ``0x`` or ``h``-suffixed hex, with multipliers.

    ``8192``, ``8k``, ``2000h``, ``0x2000``, ``1kib`` (1024), ``1kb`` (1000), ``2x3`` (6),
    ``1w`` (2), ``1b`` (512); white space, ``,`` and ``#`` end the number.

    :returns: the value, or -1 for anything unreadable or negative.
    """
    if not text:
        return -1
    text = text.lstrip(" \t")
    if not text:
        return -1
    for stop in " \t,#":
        cut = text.find(stop)
        if cut >= 0:
            text = text[: min(cut, 15)]
    if text[:2] in ("0x", "0X"):
        value = scan_hex(text[2:], 32)
        return -1 if value is None else _nonneg(_int32(value))
    if text and text[-1] in "hH":
        value = scan_hex(text, 32)
        return -1 if value is None else _nonneg(_int32(value))
    scanned = _scan_int(text)
    if scanned is None:
        return -1
    num, rest = scanned
    if num < 0:
        return -1
    if not rest:
        return num
    return _multiplied(num, text, rest)


def _nonneg(value: int) -> int:
    return value if value >= 0 else -1


def _multiplied(num: int, text: str, rest: str) -> int:
    c, c2, c3 = rest[0].upper(), rest[1:2].upper(), rest[2:3].upper()
    if c == "C":
        return num
    if c == "W":
        return num * 2
    if c == "B":
        return num * 512
    if c in _MULTIPLIERS:
        binary, decimal = _MULTIPLIERS[c]
        if not c2:
            return _int32(num * binary)
        if c2 in "BD":
            return _int32(num * decimal)
        if c2 == "I" and c3 == "B":
            return _int32(num * binary)
        return -1
    if c == "X":
        cut = text.find("x")
        if cut < 0:
            cut = text.find("X")
        factor = get_num(text[cut + 1 :])
        return -1 if factor == -1 else _int32(num * factor)
    _err("unrecognized multiplier\n")
    return -1


def _get_num_nomult(text: str) -> int:
    """sg3_utils' ``sg_get_num_nomult`` (no multipliers): -1 if unreadable."""
    if text[:2] in ("0x", "0X"):
        value = scan_hex(text[2:], 32)
    elif text and text[-1] in "hH":
        value = scan_hex(text, 32)
    else:
        scanned = _scan_int(text)
        return -1 if scanned is None else scanned[0]
    return -1 if value is None else _int32(value)


# -- hex dumps, as sg3_utils prints them -----------------------------------------------------


def hex_dump(data: bytes, no_ascii: int) -> str:
    """sg3_utils' ``hex2stdout`` / ``dStrHex`` text of *data*.

    :param no_ascii: above 0, each line has the offset then up to 16 hex bytes; 0 adds the
        bytes as ASCII on the right; below 0, only the hex bytes.
    """
    lines: list[str] = []
    if not data:
        return ""
    if no_ascii < 0:
        for at in range(0, len(data), 16):
            chunk = data[at : at + 16]
            text = " ".join(f"{b:02x}" for b in chunk[:8])
            if len(chunk) > 8:
                text += "  " + " ".join(f"{b:02x}" for b in chunk[8:])
            lines.append(text)
        return "".join(line + "\n" for line in lines)
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        buff = [" "] * 80
        address = f"{at:02x}"
        buff[1 : 1 + len(address)] = address
        bpos = 5
        for i, byte in enumerate(chunk):
            bpos += 3
            if bpos == 5 + 27:
                bpos += 1
            buff[bpos : bpos + 2] = f"{byte:02x}"
            if not no_ascii:
                buff[60 + i] = chr(byte) if 0x20 <= byte < 0x7F else "."
        line = "".join(buff[: 60 + len(chunk)])
        lines.append(line.rstrip(" ") if no_ascii else line[:76])
    return "".join(line + "\n" for line in lines)


def hex_str(data: bytes, leadin: str = "", *, ascii: bool = False) -> str:
    """sg3_utils' ``hex2str``: 16 hex bytes a line, each line after *leadin*.

    :param ascii: add the bytes as ASCII on the right (``format`` 0 in sg3_utils).
    """
    leadin = leadin[:60]
    out = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        text = " ".join(f"{b:02x}" for b in chunk[:8])
        if len(chunk) > 8:
            text += "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        if ascii:
            chars = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
            text = text.ljust(52) + chars.ljust(16)
        out.append(leadin + text + "\n")
    return "".join(out)


def _cstr(data: bytes, limit: int) -> str:
    """``printf("%.*s", limit, data)``: up to *limit* bytes, stopping at a NUL."""
    chunk = data[: max(limit, 0)]
    end = chunk.find(0)
    if end >= 0:
        chunk = chunk[:end]
    return chunk.decode("utf-8", "replace")


def _be(data: bytes | bytearray, at: int, size: int) -> int:
    return int.from_bytes(data[at : at + size].ljust(size, b"\0"), "big")


def transport_id_text(leadin: str, data: bytes, length: int, *, only_one: bool = True) -> str:
    """sg3_utils' ``sg_decode_transportid_str`` for the TransportID(s) in *data*.

    :param length: the length the caller gives (sg_persist: the ADDITIONAL DESCRIPTOR LENGTH);
        bytes past the end of *data* read as zero.
    :param only_one: decode the first TransportID only.
    """
    out: list[str] = []
    at = 0
    first = True
    while length > 0:
        if not first and only_one:
            break
        first = False
        tid = data[at : at + max(length, _TID_MIN_LEN)].ljust(_TID_MIN_LEN, b"\0")
        if length < _TID_MIN_LEN or length % 4:
            # sg3_utils prints the size of its text buffer here, always 1024 in sg_persist.
            out.append(f"{leadin}Transport Id short or not multiple of 4 [length=1024]:\n")
        else:
            out.append(f"{leadin}Transport Id of initiator:\n")
        fmt, proto = tid[0] >> 6, tid[0] & 0x0F
        normal = min(length, _TID_MIN_LEN)
        bump = _TID_MIN_LEN
        unexpected = f"{leadin}  [Unexpected TPID format: {fmt}]\n" if fmt else ""
        if proto == 0x0:
            out += [f"{leadin}  FCP-2 World Wide Name:\n", unexpected]
            out.append(hex_str(tid[8:16], leadin))
        elif proto == 0x1:
            out.append(f"{leadin}  Parallel SCSI initiator SCSI address: 0x{_be(tid, 2, 2):x}\n")
            out.append(unexpected)
            out.append(
                f"{leadin}  relative port number (of corresponding target): 0x{_be(tid, 6, 2):x}\n"
            )
        elif proto == 0x2:
            out.append(f"{leadin}  SSA (transport id not defined):\n")
            out.append(f"{leadin}  TPID format: {fmt}\n")
            out.append(hex_str(tid[:normal], leadin))
        elif proto == 0x3:
            out += [f"{leadin}  IEEE 1394 EUI-64 name:\n", unexpected]
            out.append(hex_str(tid[8:16], leadin))
        elif proto == 0x4:
            out += [f"{leadin}  RDMA initiator port identifier:\n", unexpected]
            out.append(hex_str(tid[8:24], leadin))
        elif proto == 0x5:
            num = _be(tid, 2, 2)
            body = data[at + 4 : at + 4 + num]
            if fmt == 0:
                out.append(f"{leadin}  iSCSI name: {_cstr(body, num)}\n")
            elif fmt == 1:
                out.append(f"{leadin}  iSCSI world wide unique port id: {_cstr(body, num)}\n")
            else:
                out.append(f"{leadin}  iSCSI   [Unexpected TPID format: {fmt}]\n")
                raw = data[at : at + num + 4].ljust(num + 4, b"\0")
                out.append(hex_str(raw, leadin, ascii=True))
            bump = max(num + 4, _TID_MIN_LEN)
        elif proto == 0x6:
            out.append(f"{leadin}  SAS address: 0x{_be(tid, 4, 8):x}\n")
            out.append(unexpected)
        elif proto in (0x7, 0x8, 0x9, 0xB):
            name = {0x7: "ADT", 0x8: "ATAPI", 0x9: "UAS", 0xB: "PCIE"}[proto]
            out.append(f"{leadin}  {name}:\n{leadin}  TPID format: {fmt}\n")
            out.append(hex_str(tid[:normal], leadin))
        elif proto == 0xA:
            if fmt == 0:
                out.append(f"{leadin}  SOP Routing ID: 0x{_be(tid, 2, 2):x}\n")
            else:
                out.append(f"{leadin}  SOP   [Unexpected TPID format: {fmt}]\n")
                out.append(hex_str(tid[:normal], leadin))
        elif proto == 0xF:
            out.append(f"{leadin}  No specified protocol\n")
        else:
            out.append(f"{leadin}  unknown protocol id=0x{proto:x}  TPID format={fmt}\n")
            out.append(hex_str(tid[:normal], leadin))
        at += bump
        length -= bump
    return "".join(out)


# -- sense and exit texts --------------------------------------------------------------------


def _asc_text(asc: int, ascq: int) -> str:
    text = _ASC_TEXT.get((asc << 8) | ascq)
    if text is not None:
        return f"Additional sense: {text}"
    vendor = "vendor specific " if asc >= 0x80 else ""
    return f"{vendor}ASC={asc:02x}, ASCQ={ascq:02x} (hex)"


def sense_text(sense: bytes, *, raw: bool = False) -> str:
    """The sense description sg3_utils prints (``sg_get_sense_str``), for the sense a PR
    command ends with: format, sense key and additional sense, then with *raw* the bytes.
    """
    if not sense:
        return ""
    code = sense[0] & 0x7F
    if code not in (0x70, 0x71, 0x72, 0x73):
        return f"Unrecognized sense response code 0x{code:x}\n" + hex_str(sense, "    ")
    if code >= 0x72:
        form, key_at, asc_at, limit = "Descriptor", 1, 2, len(sense)
    else:
        form, key_at, asc_at = "Fixed", 2, 12
        limit = min(len(sense), 8 + sense[7]) if len(sense) > 7 else len(sense)
    when = "<<<deferred>>>" if code in (0x71, 0x73) else "current"
    key = sense[key_at] & 0x0F if len(sense) > key_at else 0
    asc = sense[asc_at] if limit > asc_at else 0
    ascq = sense[asc_at + 1] if limit > asc_at + 1 else 0
    text = f"{form} format, {when}; Sense key: {_SENSE_KEY_TEXT[key]}\n"
    text += _asc_text(asc, ascq) + "\n"
    if raw:
        embedded = min(len(sense), 8 + sense[7]) if len(sense) > 7 else len(sense)
        text += f" Raw sense data (in hex), sb_len={len(sense)}, embedded_len={embedded}\n"
        text += hex_str(sense[:embedded], "        ")
    return text


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


def _category_text(status: int, verbose: int) -> str:
    """sg3_utils' ``sg_get_category_sense_str``."""
    text = exit_text(status, longer=verbose > 0)
    if text is not None:
        return text
    text = f"Sense category: {status}"
    return text if verbose else f"{text}, try '-v' option for more information"


def _convert_errno(err: int) -> int:
    """sg3_utils' ``sg_convert_errno``: 50 + errno, 50 for errno 47 and above."""
    if err <= 0:
        return Exit.OS_BASE_ERR if err < 0 else 0
    return Exit.OS_BASE_ERR + err if err < Exit.MALFORMED - Exit.OS_BASE_ERR else Exit.OS_BASE_ERR


def _sense_category(sense: bytes) -> int:
    """sg3_utils' ``sg_err_category_sense``."""
    if len(sense) < 3 or (sense[0] & 0x7F) not in (0x70, 0x71, 0x72, 0x73):
        return Exit.SENSE
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


# -- GNU getopt_long --------------------------------------------------------------------------

_SHORT_OPTS = "AcCd:GHhiIkK:l:Lm:MnoPQ:rRsS:T:UvVX:yYzZ"


@attrs.frozen
class _LongOpt:
    name: str
    has_arg: bool
    val: str


def _long_table(table: Sequence[tuple[str, bool, str]]) -> tuple[_LongOpt, ...]:
    return tuple(_LongOpt(name, has_arg, val) for name, has_arg, val in table)


# sg_persist's table, in its order (the order decides which abbreviation wins).
_SG_LONG_OPTS = _long_table(
    [
        ("alloc-length", True, "l"),
        ("alloc_length", True, "l"),
        ("clear", False, "C"),
        ("device", True, "d"),
        ("help", False, "h"),
        ("hex", False, "H"),
        ("in", False, "i"),
        ("maxlen", True, "m"),
        ("no-inquiry", False, "n"),
        ("no_inquiry", False, "n"),
        ("out", False, "o"),
        ("param-alltgpt", False, "Y"),
        ("param_alltgpt", False, "Y"),
        ("param-aptpl", False, "Z"),
        ("param_aptpl", False, "Z"),
        ("param-rk", True, "K"),
        ("param_rk", True, "K"),
        ("param-sark", True, "S"),
        ("param_sark", True, "S"),
        ("param-unreg", False, "U"),
        ("param_unreg", False, "U"),
        ("preempt", False, "P"),
        ("preempt-abort", False, "A"),
        ("preempt_abort", False, "A"),
        ("prout-type", True, "T"),
        ("prout_type", True, "T"),
        ("read-full-status", False, "s"),
        ("read_full_status", False, "s"),
        ("read-keys", False, "k"),
        ("read_keys", False, "k"),
        ("readonly", False, "y"),
        ("read-reservation", False, "r"),
        ("read_reservation", False, "r"),
        ("read-status", False, "s"),
        ("read_status", False, "s"),
        ("register", False, "G"),
        ("register-ignore", False, "I"),
        ("register_ignore", False, "I"),
        ("register-move", False, "M"),
        ("register_move", False, "M"),
        ("release", False, "L"),
        ("relative-target-port", True, "Q"),
        ("relative_target_port", True, "Q"),
        ("replace-lost", False, "z"),
        ("replace_lost", False, "z"),
        ("report-capabilities", False, "c"),
        ("report_capabilities", False, "c"),
        ("reserve", False, "R"),
        ("transport-id", True, "X"),
        ("transport_id", True, "X"),
        ("unreg", False, "U"),
        ("verbose", False, "v"),
        ("version", False, "V"),
    ]
)
# qompr's own options.
_QOMPR_LONG_OPTS = _long_table(
    [
        ("helper", True, "helper"),
        ("object", True, "object"),
        ("initiator", True, "initiator"),
        ("target-port", True, "target-port"),
        ("json", False, "json"),
    ]
)


def _short_table(spec: str) -> dict[str, bool]:
    table: dict[str, bool] = {}
    for i, c in enumerate(spec):
        if c != ":":
            table[c] = spec[i + 1 : i + 2] == ":"
    return table


_SHORT = _short_table(_SHORT_OPTS)


def _getopt_long(argv: Sequence[str], operands: list[str]) -> Iterator[tuple[str, str | None]]:
    """GNU ``getopt_long`` in its default (permuting) mode, as an iterator of (option,
    argument) pairs; operands are appended to *operands*.  An error is reported on stderr
    as glibc words it and yields ``("?", None)``.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            operands.extend(argv[i:])
            return
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        if arg.startswith("--"):
            opt, optarg, i = _long_option(arg[2:], argv, i)
            yield opt, optarg
            continue
        j = 1
        while j < len(arg):
            c = arg[j]
            j += 1
            if c not in _SHORT:
                _err(f"{PROG}: invalid option -- '{c}'\n")
                yield "?", None
                continue
            if not _SHORT[c]:
                yield c, None
                continue
            if j < len(arg):
                optarg, j = arg[j:], len(arg)
            elif i < len(argv):
                optarg, i = argv[i], i + 1
            else:
                _err(f"{PROG}: option requires an argument -- '{c}'\n")
                yield "?", None
                continue
            yield c, optarg


def _long_option(text: str, argv: Sequence[str], i: int) -> tuple[str, str | None, int]:
    """One ``--name[=value]`` as glibc's ``process_long_option`` handles it.

    qompr's own options are looked up only when the name matches none of sg_persist's,
    so every abbreviation sg_persist accepts means the same here.
    """
    name, eq, value = text.partition("=")
    found: _LongOpt | None = None
    for table in (_SG_LONG_OPTS, _QOMPR_LONG_OPTS):
        found = next((opt for opt in table if opt.name == name), None)
        if found is not None:
            break
        matches = [opt for opt in table if opt.name.startswith(name)]
        if not matches:
            continue
        first = matches[0]
        if any((opt.has_arg, opt.val) != (first.has_arg, first.val) for opt in matches[1:]):
            # glibc lists the first match and every match that differs from it.
            shown = [first] + [
                opt for opt in matches[1:] if (opt.has_arg, opt.val) != (first.has_arg, first.val)
            ]
            names = " ".join(f"'--{opt.name}'" for opt in shown)
            _err(f"{PROG}: option '--{text}' is ambiguous; possibilities: {names}\n")
            return "?", None, i
        found = first
        break
    if found is None:
        _err(f"{PROG}: unrecognized option '--{text}'\n")
        return "?", None, i
    if eq:
        if not found.has_arg:
            _err(f"{PROG}: option '--{found.name}' doesn't allow an argument\n")
            return "?", None, i
        return found.val, value, i
    if found.has_arg:
        if i < len(argv):
            return found.val, argv[i], i + 1
        _err(f"{PROG}: option '--{found.name}' requires an argument\n")
        return "?", None, i
    return found.val, None, i


# -- TransportIDs given with -X ---------------------------------------------------------------


def _span(text: str, chars: str) -> int:
    """C's ``strspn``."""
    n = 0
    while n < len(text) and text[n] in chars:
        n += 1
    return n


def _decode_sym_transportid(text: str, tid: bytearray, at: int) -> bool:
    """sg_persist's ``decode_sym_transportid``: a transport-specific form into *tid* at *at*."""
    tid[at : at + 24] = bytes(24)
    head, rest = text[:4], text[4:]
    hexchars = "0123456789aAbBcCdDeEfF"
    if head in ("sas,", "SAS,"):
        if _span(rest, hexchars) != 16:
            _err(f"badly formed symbolic SAS TransportID: {rest}\n")
            return False
        tid[at] = 0x6
        tid[at + 4 : at + 12] = bytes.fromhex(rest[:16])
        return True
    if head in ("spi,", "SPI,"):
        first = _scan_int(rest)
        second = _scan_int(first[1][1:]) if first and first[1].startswith(",") else None
        if first is None or second is None:
            _err(f"badly formed symbolic SPI TransportID: {rest}\n")
            return False
        tid[at] = 0x1
        tid[at + 2 : at + 4] = (first[0] & 0xFFFF).to_bytes(2, "big")
        tid[at + 6 : at + 8] = (second[0] & 0xFFFF).to_bytes(2, "big")
        return True
    for names, proto, where in (
        (("fcp,", "FCP,"), 0x0, 8),
        (("sbp,", "SBP,"), 0x3, 8),
        (("srp,", "SRP,"), 0x4, 8),
    ):
        if head in names:
            # sg_persist wants exactly 16 digits for all three, SRP's 32-digit name included.
            if _span(rest, hexchars) != 16:
                _err(f"badly formed symbolic {names[1][:3]} TransportID: {rest}\n")
                return False
            tid[at] = proto
            tid[at + where : at + where + 8] = bytes.fromhex(rest[:16])
            return True
    if head == "iqn.":
        return _decode_iqn(text, tid, at)
    if head in ("sop,", "SOP,"):
        # sg_persist asks sscanf for 2 conversions of a 1-conversion format: always refused.
        _err(f"badly formed symbolic SOP TransportID: {rest}\n")
        return False
    _err(f"unable to parse symbolic TransportID: {text}\n")
    return False


def _decode_iqn(text: str, tid: bytearray, at: int) -> bool:
    cuts = [n for n in (text.find(" "), text.find("\t")) if n >= 0]
    end = min(cuts) if cuts else -1
    isid = text.find(",i,0x")
    if end >= 0 and isid > end:
        isid = -1
    name = (text[:end] if end >= 0 else text).encode()
    alen = max(len(name) + 1, 20)
    if alen % 4:
        alen = (alen // 4 + 1) * 4
    if alen > 241:
        _err(f"iSCSI name too long, alen={alen}\n")
        return False
    tid[at] = 0x5 | (0x40 if isid >= 0 else 0)
    tid[at + 3] = alen & 0xFF
    tid[at + 4 : at + 4 + len(name)] = name
    return True


def _hex_bytes_line(text: str, tid: bytearray, at: int, func: str, where: str) -> bool:
    """Comma/space separated hex bytes into *tid* from *at*, as sg_persist's loops read them.

    :param where: the position text of the error messages (``"at pos %d"`` in the callers).
    """
    pos = 0
    k = 0
    while at + k < len(tid):
        value = scan_hex(text[pos:], 32)
        if value is None:
            _err(f"{func}: error {where.format(pos + 1)}\n")
            return False
        if value > 0xFF:
            _err(f"{func}: hex number larger than 0xff {where.format(pos + 1)}\n")
            return False
        tid[at + k] = value
        seps = [n for n in (text.find(",", pos), text.find(" ", pos)) if n >= 0]
        if not seps:
            return True
        pos = min(seps) + 1
        k += 1
    _err(f"{func}: array length exceeded\n")
    return False


@attrs.define
class _Tids:
    """sg_persist's TransportID array: MX_TIDS slots of MX_TID_LEN bytes, reused by each -X."""

    arr: bytearray = attrs.field(factory=lambda: bytearray(MX_TIDS * MX_TID_LEN))
    count: int = 0

    def slot(self, k: int) -> bytes:
        return bytes(self.arr[k * MX_TID_LEN : (k + 1) * MX_TID_LEN])

    def compact(self) -> bytes:
        """sg_persist's ``compact_transportid_array``: the TransportIDs back to back."""
        out = bytearray()
        for k in range(min(self.count, MX_TIDS)):
            off = k * MX_TID_LEN
            size = 24
            if self.arr[off] & 0x0F == 0x5:
                size = max(_be(self.arr, off + 2, 2) + 4, 24)
            out += self.arr[off : off + size].ljust(size, b"\0")
        return bytes(out)


def _build_transportid(text: str, tids: _Tids) -> bool:
    """sg_persist's ``build_transportid``: one -X argument."""
    if not text:
        tids.count = 0
    if text.startswith("-") or text[:5] in ("file=", "FILE="):
        return _decode_file_tids(None if text.startswith("-") else text[5:], tids)
    if not _decode_sym_transportid(text, tids.arr, 0):
        k = _span(text, "0123456789aAbBcCdDeEfF, ")
        if k != len(text):
            _err(f"build_transportid: error at pos {k + 1}\n")
            return False
        if not _hex_bytes_line(text, tids.arr, 0, "build_transportid", "at pos {}"):
            return False
    tids.count = 1
    return True


def _fgets_lines(stream: TextIO) -> Iterator[str]:
    """What successive ``fgets(line, 1024, fp)`` calls return: at most 1023 characters."""
    for line in stream:
        for at in range(0, max(len(line), 1), 1023):
            yield line[at : at + 1023]


def _decode_file_tids(path: str | None, tids: _Tids) -> bool:
    """sg_persist's ``decode_file_tids``: TransportIDs one a line from a file or stdin."""
    func = "decode_file_tids"
    if path is None:
        return _read_tid_lines(sys.stdin, tids, func)
    try:
        with open(path, encoding="latin-1", newline="") as stream:
            return _read_tid_lines(stream, tids, func)
    except OSError:
        _err(f"{func}: unable to open {path}\n")
        return False


def _read_tid_lines(stream: TextIO, tids: _Tids, func: str) -> bool:
    off = 0
    num = 0
    carry = ""
    for lineno, raw in enumerate(_fgets_lines(stream), start=1):
        if lineno > 512:
            break
        split_line = not raw.endswith("\n")
        line = raw if split_line else raw[:-1]
        if not line:
            carry = ""
            continue
        skip = 0  # a hex digit completing the previous line's last byte
        if carry:
            if line[0] in _HEX_DIGITS:
                if off > 0:
                    tids.arr[off - 1] = int(carry + line[0], 16)
                skip = 1
            carry = ""
        lead = _span(line[skip:], " \t")
        if lead == len(line) - skip:
            continue
        text = line[skip + lead :]
        if text.startswith("#"):
            continue
        if not _decode_sym_transportid(text, tids.arr, off):
            k = _span(text, "0123456789aAbBcCdDeEfF ,\t")
            if k < len(text) and text[k] != "#":
                _err(f"{func}: syntax error at line {lineno}, pos {lead + k + 1}\n")
                return False
            result = _file_hex_bytes(
                text, tids, off, func=func, lineno=lineno, base=skip + lead, split_line=split_line
            )
            if result is None:
                return False
            carry = result
        off += MX_TID_LEN
        if off >= MX_TIDS * MX_TID_LEN:
            _err(f"{func}: array length exceeded\n")
            return False
        num += 1
    tids.count = num
    return True


def _file_hex_bytes(
    text: str, tids: _Tids, off: int, *, func: str, lineno: int, base: int, split_line: bool
) -> str | None:
    """One line of hex bytes into the slot at *off*.

    :param base: where *text* starts in the line, for the positions in messages.
    :returns: the hex digit carried to the next line ("" if none), ``None`` after an error.
    """
    pos = 0
    carry = ""
    for k in range(1024):
        value = scan_hex(text[pos:], 32)
        if value is None:
            if text[pos:].startswith("#"):
                break
            _err(f"{func}: error in line {lineno}, at pos {base + pos + 1}\n")
            return None
        if value > 0xFF:
            _err(f"{func}: hex number larger than 0xff in line {lineno}, pos {base + pos + 1}\n")
            return None
        if split_line and len(text) - pos == 1:
            carry = text[pos]
        if off + k >= len(tids.arr):
            _err(f"{func}: array length exceeded\n")
            return None
        tids.arr[off + k] = value
        seps = [n for n in (text.find(c, pos) for c in " ,\t") if n >= 0]
        if not seps:
            break
        pos = min(seps) + _span(text[min(seps) :], " ,\t")
        if pos >= len(text):
            break
    return carry


# -- running one command ----------------------------------------------------------------------


@attrs.frozen
class _Response:
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


@attrs.frozen
class _Outcome:
    """sg3_utils' verdict on a response: the exit status and, on the GOOD path, the data-in
    byte count (``None`` on the sense and status paths)."""

    ret: int
    act: int | None = None


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


def _process(resp: _Response, leadin: str, verbose: int, requested: int) -> _Outcome:
    """sg3_utils' ``sg_cmds_process_resp`` and the ``sg_ll_*`` wrappers around it: print
    what they print (every PR command is sent "noisy") and yield the exit status.

    :param resp: what the backend answered.
    :param leadin: the command's name in messages (``Persistent reservation in``).
    :param verbose: the ``-v`` count.
    :param requested: the data-in length asked for (0 for PR OUT).
    """
    if resp.failure is not None:
        _err(f"{leadin}: {resp.failure}\n")
        return _Outcome(Exit.OTHER)
    if resp.os_error:
        text = f"{leadin}: pass-through os error: {os.strerror(resp.os_error)}\n"
        if verbose:
            _err(text)
        if resp.os_error == errno.ENXIO:
            if verbose > 2:
                _err("map ENXIO to SG_LIB_CAT_NOT_READY\n")
            return _Outcome(Exit.NOT_READY)
        if not verbose:
            _err(text)
        return _Outcome(_convert_errno(resp.os_error))
    if verbose > 2 and resp.duration_ms is not None:
        _err(f"      duration={resp.duration_ms} ms\n")
    got = len(resp.data)
    driver = resp.driver_status & 0x0F
    scsi_status = (resp.status or 0) & 0x7E
    if resp.host_status or (driver and driver != _DRIVER_SENSE):
        _err(
            f"{leadin}: transport: Host_status=0x{resp.host_status:02x} "
            f"Driver_status=0x{resp.driver_status:02x}\n"
        )
        return _Outcome(Exit.TRANSPORT_ERROR)
    if driver == _DRIVER_SENSE or scsi_status in (0x02, 0x22):
        category = _sense_category(resp.sense)
        noisy = category not in _QUIET_CATEGORIES
        if verbose or noisy:
            _err(f"{leadin}:\n" + sense_text(resp.sense, raw=verbose > 1))
            check_data_in = category in (Exit.RECOVERED, Exit.MEDIUM_HARD)
            if requested > 0 and got != requested and (verbose > 2 or check_data_in or got > 0):
                _err(_resid_text(leadin, requested, got))
        if category in (Exit.RECOVERED, Exit.NO_SENSE):
            return _Outcome(Exit.OK)
        return _Outcome(category)
    if scsi_status:
        mapped = _STATUS_CATEGORY.get(scsi_status)
        if mapped is not None:
            return _Outcome(mapped)
        _err(f"{leadin}: scsi status: {_status_text(scsi_status)}\n")
        return _Outcome(Exit.OTHER)
    if requested > 0 and got != requested and verbose > 1:
        _err(_resid_text(leadin, requested, got))
    return _Outcome(Exit.OK, got)


def _status_text(status: int) -> str:
    names = {0x10: "Intermediate (obsolete)", 0x14: "Intermediate-Condition Met (obsolete)"}
    return names.get(status, f"Unknown status [0x{status:x}]")


def _cdb_text(cdb: bytes) -> str:
    return "[" + " ".join(f"{b:02x}" for b in cdb) + "]"


def _sg_io(fd: int, cdb: bytes, data_out: bytes, allocation: int, verbose: int) -> _Response:
    """One SG_IO ioctl (:func:`qompr.linux.sgio.sg_io`) as sg3_utils' Linux pass-through
    issues it: 60 s timeout, the data-in buffer of the allocation length."""
    if data_out:
        direction = Direction.TO_DEV
    elif allocation > 0:
        direction = Direction.FROM_DEV
    else:
        direction = Direction.NONE
    start = time.monotonic()
    outcome = sg_io(
        fd, cdb, direction, data_out=data_out, data_in_size=allocation, timeout_ms=_TIMEOUT_MS
    )
    elapsed = int((time.monotonic() - start) * 1000)
    if outcome.errno:
        if verbose > 1:
            err = outcome.errno
            _err(f"ioctl(SG_IO v3) failed: {os.strerror(err)} (errno={err})\n")
        return _Response(os_error=outcome.errno)
    data = b""
    if direction == Direction.FROM_DEV:
        data = outcome.data[: max(0, min(allocation, allocation - outcome.resid))]
    return _Response(
        status=outcome.status,
        sense=_sense_written(outcome.sense, outcome.status, outcome.driver_status),
        data=data,
        host_status=outcome.host_status,
        driver_status=outcome.driver_status,
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


@attrs.frozen
class _ManagerBackend:
    """Runs commands through a qompr PR manager on an open fd, for one I_T nexus."""

    manager: PRManager
    nexus: Nexus | None

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation: int) -> _Response:
        start = time.monotonic()
        try:
            result = self.manager.execute(fd, cdb, data_out, nexus=self.nexus)
        except OSError as exc:  # ConnectError included
            cause = exc.cause if isinstance(exc, ConnectError) else None
            err = exc.errno or (cause.errno if isinstance(cause, OSError) else None)
            return _Response(os_error=err or errno.EIO)
        except (QomprError, NotImplementedError) as exc:
            return _Response(failure=str(exc))
        elapsed = int((time.monotonic() - start) * 1000)
        return _Response(
            status=int(result.status),
            sense=bytes(result.sense),
            data=bytes(result.data[:allocation]),
            duration_ms=elapsed,
        )


@attrs.frozen
class _DirectBackend:
    """Runs commands with SG_IO on the device itself."""

    verbose: int

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation: int) -> _Response:
        return _sg_io(fd, cdb, data_out, allocation, self.verbose)


_Backend = _ManagerBackend | _DirectBackend


# -- PR IN decoding, as sg_persist prints it --------------------------------------------------


def _scope_type(byte: int, indent: str) -> str:
    scope = byte >> 4
    head = f"{indent}scope: LU_SCOPE, " if scope == 0 else f"{indent}scope: {scope} "
    return f"{head} type: {_PR_TYPE_TEXT[byte & 0x0F]}\n"


def _format_capabilities(buf: bytes) -> str:
    flags = (
        ("Replace Lost Reservation Capable(RLR_C)", buf[2] & 0x80),
        ("Compatible Reservation Handling(CRH)", buf[2] & 0x10),
        ("Specify Initiator Ports Capable(SIP_C)", buf[2] & 0x08),
        ("All Target Ports Capable(ATP_C)", buf[2] & 0x04),
        ("Persist Through Power Loss Capable(PTPL_C)", buf[2] & 0x01),
        ("Type Mask Valid(TMV)", buf[3] & 0x80),
    )
    text = "Report capabilities response:\n"
    text += "".join(f"  {name}: {int(bool(bit))}\n" for name, bit in flags)
    text += f"  Allow Commands: {(buf[3] >> 4) & 0x7}\n"
    text += f"  Persist Through Power Loss Active(PTPL_A): {buf[3] & 0x01}\n"
    if buf[3] & 0x80:
        text += "    Support indicated in Type mask:\n"
        for pr_type, byte, bit in ((7, 4, 0x80), (6, 4, 0x40), (5, 4, 0x20), (3, 4, 0x08)):
            text += f"      {_PR_TYPE_TEXT[pr_type]}: {int(bool(buf[byte] & bit))}\n"
        text += f"      {_PR_TYPE_TEXT[1]}: {int(bool(buf[4] & 0x02))}\n"
        text += f"      {_PR_TYPE_TEXT[8]}: {buf[5] & 0x01}\n"
    return text


def _format_full_status(buf: bytes, add_len: int, verbose: int) -> str:
    text = ""
    if add_len == 0:
        text += "  No full status descriptors\n"
        if verbose:
            text += "  So there are no registered IT nexuses\n"
    at = 8
    while at - 8 < add_len and at < len(buf):
        desc_len = _int32(_be(buf, at + 20, 4))
        text += f"    Key=0x{_be(buf, at, 8):x}\n"
        flags = buf[at + 12] if at + 12 < len(buf) else 0
        if flags & 0x02:
            text += "      All target ports bit set\n"
        else:
            text += "      All target ports bit clear\n"
            text += f"      Relative port address: 0x{_be(buf, at + 18, 2):x}\n"
        if flags & 0x01:
            text += "      << Reservation holder >>\n"
            text += _scope_type(_be(buf, at + 13, 1), "      ")
        else:
            text += "      not reservation holder\n"
        if desc_len > 0:
            text += transport_id_text("      ", buf[at + 24 :], desc_len)
        if 24 + desc_len <= 0:
            break  # sg_persist would loop for ever on this descriptor
        at += 24 + desc_len
    return text


def _format_prin(sa: int, buf: bytes, alloc_len: int, hex_level: int, verbose: int) -> str:
    """sg_persist's text for PR IN data (``prin_work``), *buf* holding at least 8 bytes.

    :raises _Malformed: a REPORT CAPABILITIES response whose LENGTH is not 8.
    """
    if sa == PrInAction.REPORT_CAPABILITIES:
        if buf[1] != 8:
            raise _Malformed(hex_dump(buf[: buf[1]], 1) if hex_level else "")
        return hex_dump(buf[:8], 1) if hex_level else _format_capabilities(buf)
    generation = _be(buf, 0, 4)
    add_len = _int32(_be(buf, 4, 4))
    if hex_level > 1:
        return hex_dump(buf[: max(add_len + 8, 0)], 1 if hex_level == 2 else -1)
    head = f"  PR generation=0x{generation:x}"
    if hex_level:
        text = head + ", "
        if add_len <= 0:
            text += f"Additional length={add_len}\n"
        if add_len & 0xFFFF_FFFF > (alloc_len - 8) & 0xFFFF_FFFF:
            text += f"Additional length too large={add_len}, truncate\n"
            return text + hex_dump(buf[8:alloc_len], 1)
        return text + f"Additional length={add_len}\n" + hex_dump(buf[8 : 8 + add_len], 1)
    if sa == PrInAction.READ_KEYS:
        count = add_len // 8 if add_len > 0 else 0
        if count <= 0:
            return head + ", there are NO registered reservation keys\n"
        follows = (
            "1 registered reservation key follows"
            if count == 1
            else (f"{count} registered reservation keys follow")
        )
        shown = min(count, (len(buf) - 8) // 8)
        keys = "".join(f"    0x{_be(buf, 8 + 8 * k, 8):x}\n" for k in range(shown))
        return f"{head}, {follows}:\n{keys}"
    if sa == PrInAction.READ_RESERVATION:
        if add_len // 16 <= 0:
            return head + ", there is NO reservation held\n"
        key = f"    Key=0x{_be(buf, 8, 8):x}\n"
        return head + ", Reservation follows:\n" + key + _scope_type(buf[21], "    ")
    return head + "\n" + _format_full_status(buf, add_len, verbose)


class _Malformed(Exception):  # noqa: N818  (an internal signal, not an error type)
    """REPORT CAPABILITIES data sg_persist refuses; carries the stdout text (hex or empty)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# -- JSON ---------------------------------------------------------------------------------------


def _key(value: int) -> str:
    return f"0x{value:x}"


def _type_json(value: PrType | int) -> dict[str, Any]:
    return {"type": int(value), "type_name": _PR_TYPE_TEXT[int(value) & 0x0F]}


def _scope_json(value: PrScope | int) -> str | int:
    return "LU_SCOPE" if value == PrScope.LU_SCOPE else int(value)


def _tid_json(tid: TransportID) -> dict[str, Any]:
    return {
        "protocol": tid.protocol.name,
        "identifier": tid.identifier,
        "format_code": tid.format_code,
    }


def _descriptor_json(desc: FullStatusDescriptor) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": _key(desc.reservation_key),
        "all_tg_pt": desc.all_tg_pt,
        "relative_target_port": None if desc.all_tg_pt else desc.relative_target_port,
        "reservation_holder": desc.r_holder,
        "transport_id": _tid_json(desc.transport_id),
    }
    if desc.r_holder:
        out["scope"] = _scope_json(desc.scope)
        out.update(_type_json(desc.type))
    return out


def _prin_json(sa: int, data: bytes) -> dict[str, Any]:
    """The PR IN data decoded with qompr's codecs."""
    decoded = decode_pr_in_data(sa, data)
    if isinstance(decoded, ReadKeysData):
        return {"generation": decoded.generation, "keys": [_key(k) for k in decoded.keys]}
    if isinstance(decoded, ReadReservationData):
        reservation: dict[str, Any] | None = None
        if decoded.type is not None:
            reservation = {"key": _key(decoded.reservation_key)}
            reservation["scope"] = _scope_json(decoded.scope)
            reservation.update(_type_json(decoded.type))
        return {"generation": decoded.generation, "reservation": reservation}
    if isinstance(decoded, ReportCapabilitiesData):
        return {
            "rlr_c": decoded.rlr_c,
            "crh": decoded.crh,
            "sip_c": decoded.sip_c,
            "atp_c": decoded.atp_c,
            "ptpl_c": decoded.ptpl_c,
            "tmv": decoded.tmv,
            "allow_commands": decoded.allow_commands,
            "ptpl_a": decoded.ptpl_a,
            "types": [_PR_TYPE_TEXT[t] for t in sorted(decoded.types)] if decoded.tmv else [],
        }
    assert isinstance(decoded, ReadFullStatusData)
    return {
        "generation": decoded.generation,
        "registrations": [_descriptor_json(d) for d in decoded.descriptors],
    }


def _prout_json(sa: int, params: bytes) -> dict[str, Any]:
    """The PR OUT parameter list decoded with qompr's codecs."""
    decoded = decode_pr_out_parameters(sa, params)
    out: dict[str, Any] = {
        "reservation_key": _key(decoded.reservation_key),
        "sa_key": _key(decoded.sa_key),
        "aptpl": decoded.aptpl,
    }
    if isinstance(decoded, RegisterAndMoveParameters):
        out["unreg"] = decoded.unreg
        out["relative_target_port"] = decoded.relative_target_port
        out["transport_id"] = _tid_json(decoded.transport_id)
    else:
        out["all_tg_pt"] = decoded.all_tg_pt
        out["spec_i_pt"] = decoded.spec_i_pt
        out["transport_ids"] = [_tid_json(t) for t in decoded.transport_ids]
    return out


def _response_json(resp: _Response) -> dict[str, Any]:
    status: str | int | None = None
    if resp.status is not None:
        known = resp.status in ScsiStatus._value2member_map_
        status = ScsiStatus(resp.status).name if known else resp.status
    sense: dict[str, Any] | None = None
    if resp.sense and any(resp.sense) and (resp.sense[0] & 0x7F) in (0x70, 0x71, 0x72, 0x73):
        try:
            decoded = SenseData.from_bytes(resp.sense)
        except ScsiError:
            decoded = None
        if decoded is not None:
            sense = {
                "key": decoded.key.description,
                "asc": decoded.asc,
                "ascq": decoded.ascq,
                "text": _asc_text(decoded.asc, decoded.ascq).removeprefix("Additional sense: "),
                "deferred": decoded.deferred,
            }
    return {
        "status": status,
        "sense": sense,
        "os_error": os.strerror(resp.os_error) if resp.os_error else None,
        "failure": resp.failure,
    }


# -- the command line ---------------------------------------------------------------------------


@attrs.define
class _Opts:
    """sg_persist's ``struct opts_t`` plus qompr's backend options."""

    prout_type: int = 0
    param_rk: int = 0
    param_sark: int = 0
    param_rtp: int = 0
    prin_sa: int = -1
    prout_sa: int = -1
    param_alltgpt: bool = False
    param_aptpl: bool = False
    param_unreg: bool = False
    pr_in: bool = True
    inquiry: bool = True
    hex: int = 0
    readonly: bool = False
    readwrite_force: bool = False
    verbose: int = 0
    version_given: bool = False
    alloc_len: int = MX_ALLOC_LEN
    tids: _Tids = attrs.field(factory=_Tids)
    device: str | None = None
    helper: str | None = None
    objects: list[str] = attrs.field(factory=list)
    initiator: str | None = None
    target_port: int | None = None
    json: bool = False

    @property
    def uses_manager(self) -> bool:
        return self.helper is not None or bool(self.objects)


_PRIN_LETTERS = {"k": 0, "r": 1, "c": 2, "s": 3}
_PROUT_LETTERS = {"G": 0, "R": 1, "L": 2, "C": 3, "P": 4, "A": 5, "I": 6, "M": 7, "z": 8}

_USAGE_MAIN = """\
Usage: qompr persist [OPTIONS] [DEVICE]
  where the main OPTIONS are:
    --clear|-C                 PR Out: Clear
    --help|-h                  print usage message, twice for more
    --in|-i                    request PR In command (default)
    --out|-o                   request PR Out command
    --param-rk=RK|-K RK        PR Out parameter reservation key
                               (RK is in hex)
    --param-sark=SARK|-S SARK    PR Out parameter service action
                                 reservation key (SARK is in hex)
    --preempt|-P               PR Out: Preempt
    --preempt-abort|-A         PR Out: Preempt and Abort
    --prout-type=TYPE|-T TYPE    PR Out type field (see '-hh')
    --read-full-status|-s      PR In: Read Full Status
    --read-keys|-k             PR In: Read Keys (default)
    --read-reservation|-r      PR In: Read Reservation
    --read-status|-s           PR In: Read Full Status
    --register|-G              PR Out: Register
    --register-ignore|-I       PR Out: Register and Ignore
    --register-move|-M         PR Out: Register and Move
                               for '--register-move'
    --release|-L               PR Out: Release
    --replace-lost|-z          PR Out: Replace Lost Reservation
    --report-capabilities|-c   PR In: Report Capabilities
    --reserve|-R               PR Out: Reserve
    --unreg|-U                 optional with PR Out Register and Move
  and the backend OPTIONS (qompr's own) are:
    --helper=SOCKET            through the qemu-pr-helper listening on SOCKET
    --object=SPEC              through the manager created from an --object
                               string (e.g. pr-manager-emulated,id=e,state=F)
    --initiator=NAME           I_T nexus: initiator (emulated managers)
    --target-port=N            I_T nexus: relative target port (default 1)
    --json                     print the result as JSON
  without --helper or --object the command goes to DEVICE with SG_IO.

Performs a SCSI PERSISTENT RESERVE (IN or OUT) command, as sg_persist does.
Invoking 'qompr persist DEVICE' will do a PR In Read Keys command.
Use '-hh' for more options and TYPE meanings.
"""

_USAGE_OTHER = """\
Usage: qompr persist [OPTIONS] [DEVICE]
  where the other OPTIONS are:
    --alloc-length=LEN|-l LEN    allocation length hex value (used with
                                 PR In only) (default: 8192 (2000 in hex))
    --device=DEVICE|-d DEVICE    supply DEVICE as an option rather than
                                 an argument
    --hex|-H                   output response in hex (for PR In commands)
    --maxlen=LEN|-m LEN        allocation length in decimal, by default.
                               like --alloc-len= (def: 8192, 8k, 2000h)
    --no-inquiry|-n            skip INQUIRY (default: do INQUIRY)
    --param-alltgpt|-Y         PR Out parameter 'ALL_TG_PT'
    --param-aptpl|-Z           PR Out parameter 'APTPL'
    --readonly|-y              open DEVICE read-only (def: read-write)
    --relative-target-port=RTPI|-Q RTPI    relative target port identifier
    --transport-id=TIDS|-X TIDS    one or more TransportIDs can
                                   be given in several forms
    --verbose|-v               output additional debug information
    --version|-V               output version string

For the main options use '--help' or '-h' once.


PR Out TYPE field value meanings:
  0:    obsolete (was 'read shared' in SPC)
  1:    write exclusive
  2:    obsolete (was 'read exclusive')
  3:    exclusive access
  4:    obsolete (was 'shared access')
  5:    write exclusive, registrants only
  6:    exclusive access, registrants only
  7:    write exclusive, all registrants
  8:    exclusive access, all registrants
"""


def _usage(level: int) -> None:
    _err(_USAGE_MAIN if level < 2 else _USAGE_OTHER)


class _Done(Exception):  # noqa: N818  (control flow, never escapes run())
    """The exit status is decided (by the command line, or a device that cannot be opened)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _bad(option: str) -> _Done:
    _err(f"bad argument to '--{option}'\n")
    return _Done(Exit.SYNTAX_ERROR)


def _parse(argv: Sequence[str]) -> tuple[_Opts, int]:
    """sg_persist's option loop and checks.

    :returns: the options and the ``-h`` count.
    :raises _Done: when the command line alone decides the exit status.
    """
    op = _Opts()
    operands: list[str] = []
    help_level = 0
    num_prin_sa = num_prout_sa = 0
    want_prin = want_prout = False
    for opt, arg in _getopt_long(argv, operands):
        if opt == "?":
            _usage(1)
            raise _Done(Exit.OK)  # sg_persist's exit status after a getopt error
        value = arg or ""
        if opt in _PRIN_LETTERS:
            op.prin_sa = _PRIN_LETTERS[opt]
            num_prin_sa += 1
        elif opt in _PROUT_LETTERS:
            op.prout_sa = _PROUT_LETTERS[opt]
            num_prout_sa += 1
        elif opt == "d":
            op.device = value
        elif opt == "h":
            help_level += 1
        elif opt == "H":
            op.hex += 1
        elif opt == "i":
            want_prin = True
        elif opt == "o":
            want_prout = True
        elif opt == "n":
            op.inquiry = False
        elif opt == "U":
            op.param_unreg = True
        elif opt == "Y":
            op.param_alltgpt = True
        elif opt == "Z":
            op.param_aptpl = True
        elif opt == "v":
            op.verbose += 1
        elif opt == "V":
            op.version_given = True
        elif opt == "y":
            if not op.readwrite_force:
                op.readwrite_force, op.readonly = op.readonly, not op.readonly
        else:
            _parse_value(op, opt, value)
    if operands:
        if op.device is None:
            op.device = operands.pop(0)
        if operands:
            for extra in operands:
                _err(f"Unexpected extra argument: {extra}\n")
            _usage(1)
            raise _Done(Exit.SYNTAX_ERROR)
    _check(op, help_level, (want_prin, want_prout), (num_prin_sa, num_prout_sa))
    return op, help_level


def _parse_value(op: _Opts, opt: str, value: str) -> None:
    """The options with an argument."""
    if opt in ("K", "S"):
        key = scan_hex(value, 64)
        if key is None:
            raise _bad("param-rk" if opt == "K" else "param-sark")
        if opt == "K":
            op.param_rk = key
        else:
            op.param_sark = key
    elif opt in ("l", "m"):
        name = "maxlen" if opt == "m" else "alloc-length"
        length = get_num(value) if opt == "m" else scan_hex(value, 32)
        if length is None or length == -1:
            raise _bad(name)
        length &= 0xFFFF_FFFF
        if length > MX_ALLOC_LEN:
            _err(f"'--{name}' argument exceeds maximum value ({MX_ALLOC_LEN})\n")
            raise _Done(Exit.SYNTAX_ERROR)
        op.alloc_len = length
    elif opt == "Q":
        rtp = scan_hex(value, 32)
        if rtp is None:
            raise _bad("relative-target-port")
        if rtp > 0xFFFF:
            _err("argument to '--relative-target-port' 0 to ffff inclusive\n")
            raise _Done(Exit.SYNTAX_ERROR)
        op.param_rtp = rtp
    elif opt == "T":
        prout_type = scan_hex(value, 32)
        if prout_type is None:
            raise _bad("prout-type")
        op.prout_type = prout_type
    elif opt == "X":
        if not _build_transportid(value, op.tids):
            raise _bad("transport-id")
    else:
        _parse_qompr_value(op, opt, value)


def _parse_qompr_value(op: _Opts, opt: str, value: str) -> None:
    """qompr's own options."""
    if opt == "helper":
        op.helper = value
    elif opt == "object":
        op.objects.append(value)
    elif opt == "initiator":
        try:
            Nexus(value)
        except (TypeError, ValueError):
            raise _bad("initiator") from None
        op.initiator = value
    elif opt == "target-port":
        port = _get_num_nomult(value)
        if not 1 <= port <= 0xFFFF:
            raise _bad("target-port")
        op.target_port = port
    elif opt == "json":
        op.json = True


def _check(op: _Opts, help_level: int, want: tuple[bool, bool], counts: tuple[int, int]) -> None:
    """sg_persist's checks after the option loop (and qompr's)."""
    want_prin, want_prout = want
    num_prin_sa, num_prout_sa = counts
    if help_level > 0:
        _usage(help_level)
        raise _Done(Exit.OK)
    if op.verbose and op.version_given:
        _err("Not in DEBUG mode, so '-vV' has no special action\n")
    if op.version_given:
        _err(f"version: {SG_PERSIST_VERSION} (qompr {__version__})\n")
        raise _Done(Exit.OK)
    if op.device is None:
        _err("No device name given\n")
        _usage(1)
        raise _Done(Exit.SYNTAX_ERROR)
    if want_prout and want_prin:
        _err("choose '--in' _or_ '--out' (not both)\n")
        _usage(1)
        raise _Done(Exit.CONTRADICT)
    if want_prout:
        op.pr_in = False
        if num_prout_sa != 1 or num_prin_sa != 0:
            _err(
                ">> For Persistent Reserve Out one and only one appropriate\n"
                ">> service action must be chosen (e.g. '--register')\n"
            )
            raise _Done(Exit.CONTRADICT)
    else:
        if num_prout_sa > 0:
            _err(
                ">> When a service action for Persistent Reserve Out is chosen the\n"
                ">> '--out' option must be given (as a safeguard)\n"
            )
            raise _Done(Exit.CONTRADICT)
        if num_prin_sa == 0:
            _err(
                ">> No service action given; assume Persistent Reserve In command\n"
                ">> with Read Keys service action\n"
            )
            op.prin_sa = 0
        elif num_prin_sa > 1:
            _err("Too many service actions given; choose one only\n")
            _usage(1)
            raise _Done(Exit.CONTRADICT)
    if (op.param_unreg or op.param_rtp) and op.prout_sa != PrOutAction.REGISTER_AND_MOVE:
        _err("--unreg or --relative-target-port only useful with --register-move\n")
        _usage(1)
        raise _Done(Exit.CONTRADICT)
    if op.prout_sa == PrOutAction.REGISTER_AND_MOVE and op.tids.count != 1:
        _err("with --register-move one (and only one) --transport-id should be given\n")
        _usage(1)
        raise _Done(Exit.CONTRADICT)
    if op.prout_sa in (1, 2, 4, 5) and op.prout_type == 0:
        _err("warning>>> --prout-type probably needs to be given\n")
    if op.helper is not None and op.objects:
        _err("--helper and --object are alternatives: give one of them\n")
        raise _Done(Exit.CONTRADICT)
    if (op.initiator is not None or op.target_port is not None) and not op.uses_manager:
        _err("--initiator and --target-port need a manager (--object or --helper)\n")
        raise _Done(Exit.CONTRADICT)


# -- the run ----------------------------------------------------------------------------------

_HELPER_ID = "helper0"
_REOPEN_READ_ONLY = frozenset((errno.EACCES, errno.EPERM, errno.EROFS))


def _as_transport_ids(tids: bytes) -> tuple[TransportID, ...] | None:
    """*tids* as qompr TransportIDs, if they encode back to exactly these bytes (FC, SAS and
    iSCSI in SPC-4 form do; other protocols and odd hex input do not)."""
    try:
        decoded = TransportID.decode_list(tids)
    except ScsiError:
        return None
    return decoded if b"".join(t.to_bytes() for t in decoded) == tids else None


def _basic_parameters(op: _Opts, tids: bytes) -> bytes:
    """The basic parameter list sg_persist sends: 24 bytes, then with TransportIDs SPEC_I_PT=1,
    their length and the TransportIDs, byte for byte as given."""
    decoded = _as_transport_ids(tids) if tids else ()
    carried = decoded is not None
    params = PrOutParameters(
        reservation_key=op.param_rk,
        sa_key=op.param_sark,
        spec_i_pt=bool(tids) and carried,
        all_tg_pt=op.param_alltgpt,
        aptpl=op.param_aptpl,
        transport_ids=decoded or (),
    ).to_bytes()
    if carried:
        return params
    # TransportIDs the codec cannot carry: SPEC_I_PT, their length and the bytes as given.
    head = bytearray(params)
    head[20] |= 0x08
    return bytes(head) + len(tids).to_bytes(4, "big") + tids


def _register_and_move_parameters(op: _Opts, tids: bytes) -> bytes:
    """The REGISTER AND MOVE list sg_persist sends, its TransportID byte for byte as given."""
    decoded = _as_transport_ids(tids)
    if decoded is not None and len(decoded) == 1:
        return RegisterAndMoveParameters(
            transport_id=decoded[0],
            reservation_key=op.param_rk,
            sa_key=op.param_sark,
            unreg=op.param_unreg,
            aptpl=op.param_aptpl,
            relative_target_port=op.param_rtp,
        ).to_bytes()
    # The same layout (RegisterAndMoveParameters') with a TransportID the codec cannot carry.
    params = bytearray(24)
    params[0:8] = op.param_rk.to_bytes(8, "big")
    params[8:16] = op.param_sark.to_bytes(8, "big")
    params[17] = (0x02 if op.param_unreg else 0) | (0x01 if op.param_aptpl else 0)
    params[18:20] = op.param_rtp.to_bytes(2, "big")
    params[20:24] = len(tids).to_bytes(4, "big")
    return bytes(params) + tids


class _Session:
    """One ``qompr persist`` run after the command line was accepted (sg_persist's main from
    the INQUIRY on)."""

    def __init__(self, op: _Opts, pm: pluggy.PluginManager | None) -> None:
        self.op = op
        self.pm = pm
        self.flagged = False
        self.finished = False  # nothing more to do (an --object help request was answered)
        self.tree: ObjectTree | None = None
        self.backend: _Backend = _DirectBackend(op.verbose)
        self.report: dict[str, Any] = {"device": op.device, "backend": "direct"}

    def say(self, text: str) -> None:
        """Text for stdout (in JSON mode, stdout carries only the JSON)."""
        if not self.op.json:
            _out(text)

    # -- backends ---------------------------------------------------------------------------

    def create_manager(self) -> int:
        """Create the manager of --object/--helper; an exit status if that failed."""
        op = self.op
        tree = new_tree(self.pm)
        self.tree = tree

        def warn(located: str, hint: str) -> None:
            _err(format_warning(located, hint, PROG))

        try:
            if op.helper is not None:
                objects = [tree.object_add("pr-manager-helper", _HELPER_ID, path=op.helper)]
            else:
                answer = process(tree, op.objects, Syntax.KEYVAL, warn=warn)
                if isinstance(answer, HelpText):
                    _out(answer.text)
                    self.finished = True
                    return Exit.OK
                objects = list(answer)
        except QomprError as exc:
            _err(format_error(exc, PROG))
            self.flagged = True
            cause = exc.cause if isinstance(exc, ConnectError) else None
            if isinstance(cause, OSError) and cause.errno:
                return _convert_errno(cause.errno)
            return Exit.SYNTAX_ERROR
        managers = [obj for obj in objects if isinstance(obj, PRManager)]
        if not managers:
            _err(f"{PROG}: --object: none of the objects is a persistent reservation manager\n")
            self.flagged = True
            return Exit.SYNTAX_ERROR
        manager = managers[-1]
        nexus = self._nexus(manager)
        self.backend = _ManagerBackend(manager, nexus)
        self.report["backend"] = manager.typename
        self.report["manager"] = manager.id
        shown = nexus if nexus is not None else manager.default_nexus
        if shown is not None:
            self.report["nexus"] = {
                "initiator": shown.initiator,
                "target_port": shown.target_port,
                "transport_id": shown.transport_id.identifier,
            }
        return Exit.OK

    def _nexus(self, manager: PRManager) -> Nexus | None:
        op = self.op
        if op.initiator is not None:
            return Nexus(op.initiator, op.target_port or 1)
        if op.target_port is None:
            return None
        # The manager's own initiator (pr-manager-emulated has one) through another port.
        default = manager.default_nexus
        if default is not None:
            return Nexus(default.initiator, op.target_port, transport_id=default.transport_id)
        return Nexus(f"{PROG.replace(' ', '-')}:{os.getpid()}", op.target_port)

    def close(self) -> None:
        if self.tree is None:
            return
        for obj in reversed(self.tree.user_objects()):
            if obj.id is not None:
                with contextlib.suppress(QomprError):
                    self.tree.object_del(obj.id)

    # -- the device -------------------------------------------------------------------------

    def open(self, readonly: bool, *, inquiry: bool = False) -> int:
        """Open the device as sg3_utils does (a manager's PR IN falls back to read-only).

        :param inquiry: the open for the INQUIRY, whose failure sg_persist words differently.
        :returns: the file descriptor.
        :raises _Done: with the exit status (50 + errno) when the device cannot be opened.
        """
        op = self.op
        path = op.device
        assert path is not None
        fallback = op.uses_manager and op.pr_in and not readonly
        flags = os.O_NONBLOCK | (os.O_RDONLY if readonly else os.O_RDWR)
        while True:
            if op.verbose > 1:
                _err(f"open {path} with flags=0x{flags:x}\n")
            try:
                return os.open(path, flags)
            except OSError as exc:
                err = exc.errno or errno.EIO
                if op.verbose > 1:
                    _err(f"scsi_pt_open_flags: open({path}, 0x{flags:x}) failed: {exc.strerror}\n")
                if fallback and err in _REOPEN_READ_ONLY:
                    fallback, readonly = False, True
                    flags = os.O_NONBLOCK | os.O_RDONLY
                    continue
                if inquiry:
                    _err(f"{PROG}: error opening file (ro): {path}: {os.strerror(err)}\n")
                else:
                    mode = "o" if readonly else "w"
                    _err(f"{PROG}: error opening file {path} (r{mode}): {os.strerror(err)}\n")
                self.flagged = True
                raise _Done(_convert_errno(err)) from None

    def inquiry(self) -> int:
        """sg_persist's standard INQUIRY (direct backend only)."""
        op = self.op
        fd = self.open(True, inquiry=True)
        try:
            cdb = bytes((0x12, 0, 0, 0, 36, 0))
            if op.verbose:
                _err(f"    inquiry cdb: {_cdb_text(cdb)}\n")
            resp = _sg_io(fd, cdb, b"", 36, op.verbose)
            outcome = _process(resp, "inquiry", op.verbose, 36)
            ret = outcome.ret
            if ret == 0 and outcome.act is not None and outcome.act < 4:
                if op.verbose:
                    _err(f"sg_ll_inquiry_com: got too few bytes ({outcome.act})\n")
                ret = Exit.MALFORMED
            if ret:
                self.say(f"{PROG}: SCSI INQUIRY failed on {op.device}\n")
                self.flagged = True
                return ret
            data = resp.data.ljust(36, b"\0")
            pdt = data[0] & 0x1F
            self.report["inquiry"] = {
                "vendor": _cstr(data[8:16], 8),
                "product": _cstr(data[16:32], 16),
                "revision": _cstr(data[32:36], 4),
                "peripheral_device_type": _PDT_TEXT[pdt],
            }
            self.say(
                f"  {_cstr(data[8:16], 8)}  {_cstr(data[16:32], 16)}  {_cstr(data[32:36], 4)}\n"
                f"  Peripheral device type: {_PDT_TEXT[pdt]}\n"
            )
            return Exit.OK
        finally:
            os.close(fd)

    # -- the commands -----------------------------------------------------------------------

    def prin(self, fd: int) -> int:
        """sg_persist's ``prin_work``."""
        op = self.op
        sa = op.prin_sa
        name = _PRIN_SA_TEXT[sa]
        cdb = PrInCdb(sa, op.alloc_len).to_bytes()
        self.report.update(command="PR IN", service_action=name, cdb=cdb.hex())
        if op.verbose:
            _err(f"    Persistent reservation in cdb: {_cdb_text(cdb)}\n")
        resp = self.backend.execute(fd, cdb, b"", op.alloc_len)
        self.report.update(_response_json(resp))
        outcome = _process(resp, "Persistent reservation in", op.verbose, op.alloc_len)
        ret = outcome.ret
        if ret == 0 and outcome.act and op.verbose > 2:
            if op.verbose == 3:
                more = ", first 256 bytes" if outcome.act > 256 else ""
                dump = hex_dump(resp.data[:256], -1)
            else:
                more, dump = "", hex_dump(resp.data, 0)
            _err(f"    Persistent reservation in: response{more}:\n{dump}")
        if ret:
            if ret == Exit.INVALID_OP:
                _err(f"PR in ({name}): command not supported\n")
            elif ret == Exit.ILLEGAL_REQ:
                _err(
                    f"PR in ({name}): bad field in cdb or parameter list "
                    "(perhaps unsupported service action)\n"
                )
            else:
                _err(f"PR in ({name}): {_category_text(ret, op.verbose)}\n")
            return ret
        self.report["data"] = resp.data.hex()
        try:
            self.report["response"] = _prin_json(sa, resp.data)
        except ScsiError as exc:
            self.report["response"] = None
            self.report["response_error"] = str(exc)
        buf = resp.data[: op.alloc_len].ljust(max(op.alloc_len, 24), b"\0")
        try:
            text = _format_prin(sa, buf, op.alloc_len, op.hex, op.verbose)
        except _Malformed as exc:
            _err("Unexpected response for PRIN Report Capabilities\n")
            self.say(exc.text)
            return Exit.MALFORMED
        self.say(text)
        return Exit.OK

    def prout(self, fd: int) -> int:
        """sg_persist's ``prout_work`` and ``prout_reg_move_work``."""
        op = self.op
        sa = op.prout_sa
        move = sa == PrOutAction.REGISTER_AND_MOVE
        tids = op.tids.compact()
        build = _register_and_move_parameters if move else _basic_parameters
        params = build(op, tids)
        cdb = PrOutCdb(sa, PrScope.LU_SCOPE, op.prout_type & 0x0F, len(params)).to_bytes()
        self.report.update(
            command="PR OUT",
            service_action=_PROUT_SA_TEXT[sa],
            cdb=cdb.hex(),
            parameter_list=params.hex(),
        )
        try:
            self.report["parameters"] = _prout_json(sa, params)
        except ScsiError as exc:
            self.report["parameters"] = None
            self.report["parameters_error"] = str(exc)
        if op.verbose:
            _err(f"    Persistent reservation out cdb: {_cdb_text(cdb)}\n")
            if op.verbose > 1:
                _err("    Persistent reservation out parameters:\n" + hex_dump(params, 0))
        resp = self.backend.execute(fd, cdb, params, 0)
        self.report.update(_response_json(resp))
        ret = _process(resp, "Persistent reservation out", op.verbose, 0).ret
        name = "register and move" if move else _PROUT_SA_TEXT[sa]
        if ret == Exit.INVALID_OP:
            _err(f"PR out ({name}): command not supported\n")
        elif ret == Exit.ILLEGAL_REQ:
            _err(
                f"PR out ({name}): bad field in cdb or parameter list "
                "(perhaps unsupported service action)\n"
            )
        elif ret:
            _err(f"PR out ({name}): {_category_text(ret, op.verbose)}\n")
        elif op.verbose:
            what = "'register and move' command" if move else f"command ({name})"
            _err(f"PR out: {what} successful\n")
        return ret

    # -- sg_persist's main, from the TransportID dump on -------------------------------------

    def run(self) -> int:
        op = self.op
        if op.verbose > 2 and op.tids.count:
            _err(
                "number of tranport-ids decoded from command line (or stdin): "
                f"{op.tids.count}\n  Decode given transport-ids:\n"
            )
            for k in range(op.tids.count):
                self.say(transport_id_text("      ", op.tids.slot(k), MX_TID_LEN))
        ret = self._run()
        if ret and op.verbose == 0 and not self.flagged:
            text = exit_text(ret)
            _err(f"{PROG} failed: {text}\n" if text else f"Some error occurred [{ret}]\n")
        self.report["exit_status"] = ret
        self.report["error"] = exit_text(ret, longer=True) if ret else None
        if op.json:
            _out(json.dumps(self.report, indent=2, ensure_ascii=False) + "\n")
        return ret

    def _run(self) -> int:
        op = self.op
        if op.uses_manager:
            ret = self.create_manager()
            if ret or self.finished:
                return ret
        try:
            if op.inquiry and not op.uses_manager:
                ret = self.inquiry()
                if ret:
                    return ret
            readonly = op.readonly
            if op.readwrite_force:
                readonly = False
            elif os.environ.get(_RDONLY_ENV) is not None and op.pr_in:
                readonly = True
            fd = self.open(readonly)
            try:
                ret = self.prin(fd) if op.pr_in else self.prout(fd)
            finally:
                os.close(fd)
            return ret
        except _Done as done:
            return done.status
        finally:
            self.close()


def run(argv: Sequence[str], *, plugin_manager: pluggy.PluginManager | None = None) -> int:
    """Run ``qompr persist`` with the arguments *argv* (after the subcommand).

    :param plugin_manager: the plugins whose manager types ``--object`` may name; qompr's
        default plugin manager if omitted.
    :returns: the exit status, as sg_persist's.
    """
    try:
        op, _ = _parse(argv)
    except _Done as done:
        return done.status
    pm = plugin_manager
    if pm is None and op.uses_manager:
        pm = get_plugin_manager()
    return _Session(op, pm).run()


def _command(args: Any) -> int:
    return run(args.argv, plugin_manager=args.plugin_manager)


def add_parser(sub: Any) -> None:
    """Add ``persist`` to the ``qompr`` subcommands.

    Its arguments are parsed as sg_persist parses them (GNU getopt_long), not by argparse:
    the subparser only collects them, with a prefix character no argument starts with so
    that argparse leaves options such as ``-k`` alone.
    """
    parser = sub.add_parser(
        "persist",
        help="sg_persist's PERSISTENT RESERVE IN/OUT command, through any manager",
        description="Run 'qompr persist --help' for the options (those of sg_persist).",
        prefix_chars="\x01",
        add_help=False,
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="ARG")
    parser.set_defaults(func=_command)
