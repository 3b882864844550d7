# SPDX-License-Identifier: MIT
"""Numbers as sg3_utils reads them: glibc's ``sscanf`` conversions and ``sg_get_num``."""

from __future__ import annotations

from qompr.cli.sglib import err

__all__ = [
    "HEX_DIGITS",
    "be",
    "get_num",
    "get_num_nomult",
    "int32",
    "scan_hex",
    "scan_int",
    "span",
]

HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
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
        if digits_at >= len(text) or text[digits_at] not in HEX_DIGITS:
            return 0  # glibc reads "0x" as 0
        i = digits_at
    start = i
    while i < len(text) and text[i] in HEX_DIGITS:
        i += 1
    if i == start:
        return None
    value = min(int(text[start:i], 16), (1 << 64) - 1)
    if negative:
        value = -value % (1 << 64)
    return value & ((1 << bits) - 1)


def scan_int(text: str) -> tuple[int, str] | None:
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


def int32(value: int) -> int:
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
        return -1 if value is None else _nonneg(int32(value))
    if text and text[-1] in "hH":
        value = scan_hex(text, 32)
        return -1 if value is None else _nonneg(int32(value))
    scanned = scan_int(text)
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
            return int32(num * binary)
        if c2 in "BD":
            return int32(num * decimal)
        if c2 == "I" and c3 == "B":
            return int32(num * binary)
        return -1
    if c == "X":
        cut = text.find("x")
        if cut < 0:
            cut = text.find("X")
        factor = get_num(text[cut + 1 :])
        return -1 if factor == -1 else int32(num * factor)
    err("unrecognized multiplier\n")
    return -1


def get_num_nomult(text: str) -> int:
    """sg3_utils' ``sg_get_num_nomult`` (no multipliers): -1 if unreadable."""
    if text[:2] in ("0x", "0X"):
        value = scan_hex(text[2:], 32)
    elif text and text[-1] in "hH":
        value = scan_hex(text, 32)
    else:
        scanned = scan_int(text)
        return -1 if scanned is None else scanned[0]
    return -1 if value is None else int32(value)


def span(text: str, chars: str) -> int:
    """C's ``strspn``."""
    n = 0
    while n < len(text) and text[n] in chars:
        n += 1
    return n


def be(data: bytes | bytearray, at: int, size: int) -> int:
    """The big-endian number of *size* bytes at *at*, bytes past the end read as zero."""
    return int.from_bytes(data[at : at + size].ljust(size, b"\0"), "big")
