# SPDX-License-Identifier: MIT
"""The TransportIDs given with ``-X``, read as sg_persist reads them.

The forms: hex bytes (comma or space separated), the transport-specific ``sas,``, ``fcp,``,
``spi,``, ``sbp,``, ``srp,`` and ``iqn.`` strings, and ``file=NAME`` or ``-`` (stdin) for one
TransportID a line.  They land in sg_persist's array of fixed-size slots, whose quirks (a slot
reused by each ``-X``, a hex digit carried across a line ``fgets`` split) are kept so the
bytes sent are sg_persist's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TextIO

from qompr.cli.sglib import err
from qompr.cli.sglib.numbers import HEX_DIGITS
from qompr.cli.sglib.numbers import be
from qompr.cli.sglib.numbers import scan_hex
from qompr.cli.sglib.numbers import scan_int
from qompr.cli.sglib.numbers import span

__all__ = ["MX_TIDS", "MX_TID_LEN", "Tids", "build_transportid"]

MX_TIDS = 32
MX_TID_LEN = 256


def _decode_sym_transportid(text: str, tid: bytearray, at: int) -> bool:
    """sg_persist's ``decode_sym_transportid``: a transport-specific form into *tid* at *at*."""
    tid[at : at + 24] = bytes(24)
    head, rest = text[:4], text[4:]
    hexchars = "0123456789aAbBcCdDeEfF"
    if head in ("sas,", "SAS,"):
        if span(rest, hexchars) != 16:
            err(f"badly formed symbolic SAS TransportID: {rest}\n")
            return False
        tid[at] = 0x6
        tid[at + 4 : at + 12] = bytes.fromhex(rest[:16])
        return True
    if head in ("spi,", "SPI,"):
        first = scan_int(rest)
        second = scan_int(first[1][1:]) if first and first[1].startswith(",") else None
        if first is None or second is None:
            err(f"badly formed symbolic SPI TransportID: {rest}\n")
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
            if span(rest, hexchars) != 16:
                err(f"badly formed symbolic {names[1][:3]} TransportID: {rest}\n")
                return False
            tid[at] = proto
            tid[at + where : at + where + 8] = bytes.fromhex(rest[:16])
            return True
    if head == "iqn.":
        return _decode_iqn(text, tid, at)
    if head in ("sop,", "SOP,"):
        # sg_persist asks sscanf for 2 conversions of a 1-conversion format: always refused.
        err(f"badly formed symbolic SOP TransportID: {rest}\n")
        return False
    err(f"unable to parse symbolic TransportID: {text}\n")
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
        err(f"iSCSI name too long, alen={alen}\n")
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
            err(f"{func}: error {where.format(pos + 1)}\n")
            return False
        if value > 0xFF:
            err(f"{func}: hex number larger than 0xff {where.format(pos + 1)}\n")
            return False
        tid[at + k] = value
        seps = [n for n in (text.find(",", pos), text.find(" ", pos)) if n >= 0]
        if not seps:
            return True
        pos = min(seps) + 1
        k += 1
    err(f"{func}: array length exceeded\n")
    return False


class Tids:
    """sg_persist's TransportID array: MX_TIDS slots of MX_TID_LEN bytes, reused by each -X.

    A plain class (an attrs class is compiled at import, with every ``qompr persist``).
    """

    def __init__(self) -> None:
        self.arr = bytearray(MX_TIDS * MX_TID_LEN)
        self.count = 0

    def slot(self, k: int) -> bytes:
        return bytes(self.arr[k * MX_TID_LEN : (k + 1) * MX_TID_LEN])

    def compact(self) -> bytes:
        """sg_persist's ``compact_transportid_array``: the TransportIDs back to back."""
        out = bytearray()
        for k in range(min(self.count, MX_TIDS)):
            off = k * MX_TID_LEN
            size = 24
            if self.arr[off] & 0x0F == 0x5:
                size = max(be(self.arr, off + 2, 2) + 4, 24)
            out += self.arr[off : off + size].ljust(size, b"\0")
        return bytes(out)


def build_transportid(text: str, tids: Tids) -> bool:
    """sg_persist's ``build_transportid``: one -X argument."""
    if not text:
        tids.count = 0
    if text.startswith("-") or text[:5] in ("file=", "FILE="):
        return _decode_file_tids(None if text.startswith("-") else text[5:], tids)
    if not _decode_sym_transportid(text, tids.arr, 0):
        k = span(text, "0123456789aAbBcCdDeEfF, ")
        if k != len(text):
            err(f"build_transportid: error at pos {k + 1}\n")
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


def _decode_file_tids(path: str | None, tids: Tids) -> bool:
    """sg_persist's ``decode_file_tids``: TransportIDs one a line from a file or stdin."""
    func = "decode_file_tids"
    if path is None:
        return _read_tid_lines(sys.stdin, tids, func)
    try:
        with open(path, encoding="latin-1", newline="") as stream:
            return _read_tid_lines(stream, tids, func)
    except OSError:
        err(f"{func}: unable to open {path}\n")
        return False


def _read_tid_lines(stream: TextIO, tids: Tids, func: str) -> bool:
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
            if line[0] in HEX_DIGITS:
                if off > 0:
                    tids.arr[off - 1] = int(carry + line[0], 16)
                skip = 1
            carry = ""
        lead = span(line[skip:], " \t")
        if lead == len(line) - skip:
            continue
        text = line[skip + lead :]
        if text.startswith("#"):
            continue
        if not _decode_sym_transportid(text, tids.arr, off):
            k = span(text, "0123456789aAbBcCdDeEfF ,\t")
            if k < len(text) and text[k] != "#":
                err(f"{func}: syntax error at line {lineno}, pos {lead + k + 1}\n")
                return False
            result = _file_hex_bytes(
                text, tids, off, func=func, lineno=lineno, base=skip + lead, split_line=split_line
            )
            if result is None:
                return False
            carry = result
        off += MX_TID_LEN
        if off >= MX_TIDS * MX_TID_LEN:
            err(f"{func}: array length exceeded\n")
            return False
        num += 1
    tids.count = num
    return True


def _file_hex_bytes(
    text: str, tids: Tids, off: int, *, func: str, lineno: int, base: int, split_line: bool
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
            err(f"{func}: error in line {lineno}, at pos {base + pos + 1}\n")
            return None
        if value > 0xFF:
            err(f"{func}: hex number larger than 0xff in line {lineno}, pos {base + pos + 1}\n")
            return None
        if split_line and len(text) - pos == 1:
            carry = text[pos]
        if off + k >= len(tids.arr):
            err(f"{func}: array length exceeded\n")
            return None
        tids.arr[off + k] = value
        seps = [n for n in (text.find(c, pos) for c in " ,\t") if n >= 0]
        if not seps:
            break
        pos = min(seps) + span(text[min(seps) :], " ,\t")
        if pos >= len(text):
            break
    return carry
