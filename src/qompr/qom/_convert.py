# SPDX-License-Identifier: MIT
"""String-to-value conversions exactly as QEMU's visitors do them.

QEMU converts the *string* values of an ``-object key=value`` option in one of two visitors,
with the same rules but different error texts:

* the **opts visitor** (``qemu-system-x86_64 -object``),
* the **keyval visitor** (``qemu-storage-daemon --object`` and the other tools).

A JSON ``-object`` gives real types and goes through the **qobject visitor**, which converts
nothing and only checks the JSON type.  :class:`Flavour` names the three.
"""

from __future__ import annotations

import enum
import re

__all__ = [
    "Flavour",
    "argument_bytes",
    "argument_text",
    "parse_bool",
    "parse_int",
    "parse_size",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class Flavour(enum.Enum):
    """Which QEMU front end's rules (and error texts) apply."""

    #: QemuOpts parsing + opts visitor: ``qemu-system-x86_64 -object``.
    QEMU_SYSTEM = "qemu-system"
    #: keyval parsing + keyval visitor: ``qemu-storage-daemon --object``, qemu-img, qemu-nbd.
    KEYVAL = "keyval"
    #: JSON ``{...}`` + qobject input visitor: real types, no string conversion.
    JSON = "json"


def argument_bytes(text: str) -> bytes:
    """The bytes a QEMU program would hold for *text*, a Python string given as an argument.

    Arguments are bytes, and Python keeps the ones that are not UTF-8 as lone surrogates
    U+DC80..U+DCFF (``surrogateescape``): they become those bytes again.  Two more things have
    no byte form a command line can carry, and get the one QEMU's own strings use:

    * U+0000 becomes C0 80, as QEMU's JSON parser stores ``\\u0000`` (modified UTF-8);
    * any other lone surrogate becomes its three-byte form (ED A0 80 for U+D800), which no
      UTF-8 reader accepts, so QEMU's answer is the one it gives for those bytes.

    Everything a user can pass therefore has the answer real QEMU gives for some argv.
    """
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = b"".join(_char_bytes(ch) for ch in text)
    return data.replace(b"\0", b"\xc0\x80")


def _char_bytes(ch: str) -> bytes:
    if "\udc80" <= ch <= "\udcff":
        return bytes([ord(ch) - 0xDC00])
    return ch.encode("utf-8", "surrogatepass")


def argument_text(text: str) -> str:
    """*text* as the string a QEMU program's argument decodes to: :func:`argument_bytes`,
    read back with ``surrogateescape``.  Idempotent; ASCII without NUL comes back unchanged."""
    if text.isascii() and "\0" not in text:
        return text
    return argument_bytes(text).decode("utf-8", "surrogateescape")


_BOOL = {"on": True, "yes": True, "true": True, "y": True,
         "off": False, "no": False, "false": False, "n": False}  # fmt: skip


def parse_bool(text: str) -> bool | None:
    """QEMU's ``qapi_bool_parse``: exact, case-sensitive words; ``None`` if not a boolean."""
    return _BOOL.get(text)


# strtoll/strtoull skip leading white space (isspace in the C locale) and take one sign.
_C_SPACE = " \t\n\v\f\r"


#: More significant digits than this are beyond 64 bits in base 8, 10 and 16.
_MAX_DIGITS = 22
_OUT_OF_RANGE = 1 << 80


def _strtoint(text: str, base: int) -> tuple[int, str] | None:
    """C ``strto[u]ll`` prefix parse: (value, rest) or None when no digits were consumed."""
    s = text.lstrip(_C_SPACE)
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if base == 0:
        if s[:2].lower() == "0x" and s[2:3] and s[2:3] in "0123456789abcdefABCDEF":
            base, s = 16, s[2:]
        elif s[:1] == "0":
            base = 8
        else:
            base = 10
    elif base == 16 and s[:2].lower() == "0x" and s[2:3] and s[2:3] in "0123456789abcdefABCDEF":
        s = s[2:]
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    n = 0
    while n < len(s) and s[n].lower() in digits:
        n += 1
    if n == 0:
        return None
    significant = s[:n].lstrip("0")
    # Past 64 bits only "out of range" matters (strtoull's ERANGE); cap the digits so that a
    # hostile 5,000-digit number costs nothing and stays below Python's int-string limit.
    value = int(significant or "0", base) if len(significant) <= _MAX_DIGITS else _OUT_OF_RANGE
    return (-value if neg else value), s[n:]


def parse_int(text: str) -> int | None:
    """QEMU's ``qemu_strtoi64(text, NULL, 0)``: base 0 (``0x`` hex, ``0`` octal), whole string,
    in int64 range.  ``None`` when QEMU would refuse it."""
    parsed = _strtoint(text, 0)
    if parsed is None or parsed[1]:
        return None
    value = parsed[0]
    return value if INT64_MIN <= value <= INT64_MAX else None


def parse_uint(text: str) -> int | None:
    """QEMU's ``qemu_strtou64(text, NULL, 0)``.  As in C, ``-1`` wraps to 2**64-1."""
    parsed = _strtoint(text, 0)
    if parsed is None or parsed[1]:
        return None
    value = parsed[0]
    if value < 0:
        if -value > UINT64_MAX:
            return None
        value += 2**64
    return value if value <= UINT64_MAX else None


_SUFFIX = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50,
           "e": 1 << 60}  # fmt: skip
_FRACTION = re.compile(r"\.[0-9]*")


def parse_size(text: str) -> int | None:
    """QEMU's ``qemu_strtosz``: a size in bytes, or ``None`` when QEMU would refuse it.

    Rules (util/cutils.c, QEMU >= 6.0): decimal integer part (white space and ``+`` allowed,
    any ``-`` refused); ``0x`` hex allowed but then no fraction and no suffix; a decimal
    fraction needs a suffix other than ``B``; one suffix of B/K/M/G/T/P/E in either case
    (powers of 1024, bytes by default); exponents refused; the result rounds half up and must
    fit in 64 bits.
    """
    parsed = _strtoint(text, 10)
    if parsed is None:
        return None
    value, rest = parsed
    consumed = text[: len(text) - len(rest)]
    if "-" in consumed:
        return None
    frac_num, frac_den = 0, 1
    if value == 0 and rest[:1] in ("x", "X"):
        hexed = _strtoint(text, 16)
        if hexed is None:
            return None
        value, rest = hexed
        if rest[:1] == "." or rest[:1].lower() in _SUFFIX:
            return None
    elif rest[:1] == ".":
        # strtod reads the fraction; an exponent anywhere in it rejects the whole input.
        m = re.match(r"\.[0-9]*(?:[eE][+-]?[0-9]+)?", rest)
        assert m is not None
        if "e" in m.group(0).lower():
            return None
        # Beyond 70 digits a decimal fraction cannot change its 64-bit fixed-point value:
        # any k / 2**64 has at most 64 decimals, so truncating there keeps floor(f * 2**64).
        digits = m.group(0)[1:71]
        if digits:
            frac_num, frac_den = int(digits), 10 ** len(digits)
        rest = rest[m.end() :]
    mul = _SUFFIX.get(rest[:1].lower(), 0) if rest else 0
    if mul:
        rest = rest[1:]
    else:
        mul = 1
    if rest:
        return None
    if mul == 1:
        if frac_num:
            return None
        result = value
    else:
        # QEMU keeps the fraction as 64-bit fixed point, then rounds half up.
        fixed = (frac_num << 64) // frac_den
        scaled = fixed * mul
        result = value * mul + (scaled >> 64) + ((scaled >> 63) & 1)
    return result if result <= UINT64_MAX else None
