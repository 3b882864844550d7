# SPDX-License-Identifier: MIT
"""QEMU's JSON dialect (qobject/json-lexer.c, json-parser.c), as ``-object {...}`` reads it.

Differences from RFC 8259 that users rely on: strings may be single-quoted (``'a'``, with
``\\'`` as an escape), duplicate member names are errors, and exactly one value may be given.
Integers that fit int64 (or uint64) stay integers; others become floats.  Error texts are
QEMU 7.2's (checked by the corpus in ``tests/corpus``).
"""

from __future__ import annotations

import re
from typing import Any

from qompr.errors import OptionError

__all__ = ["json_loads"]

_WS = " \t\n\r"
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t"}  # fmt: skip


class _JsonError(Exception):
    pass


def _parse_error(what: str) -> _JsonError:
    return _JsonError(f"JSON parse error, {what}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def value(self) -> Any:
        ch = self.peek()
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.arr()
        if ch in ("'", '"'):
            return self.string()
        if ch == "-" or ch.isdigit():
            return self.number()
        m = _KEYWORD.match(self.s, self.i)
        if m:
            word = m.group(0)
            self.i = m.end()
            if word == "true":
                return True
            if word == "false":
                return False
            if word == "null":
                return None
            raise _parse_error(f"invalid keyword '{word}'")
        if ch == "":
            raise _parse_error("premature EOI")
        raise _JsonError(f"JSON parse error, stray '{ch}'")

    def number(self) -> Any:
        m = _NUMBER.match(self.s, self.i)
        if m is None:
            raise _JsonError("JSON parse error, stray '-'")
        self.i = m.end()
        text = m.group(0)
        if m.group(1) is None and m.group(2) is None:
            value = int(text)
            if -(2**63) <= value < 2**64:
                return value
        return float(text)

    def string(self) -> str:
        quote = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise _parse_error("premature EOI")
            ch = self.s[self.i]
            if ch == quote:
                self.i += 1
                return "".join(out)
            if ch == "\\":
                self.i += 1
                esc = self.s[self.i : self.i + 1]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    self.i += 1
                elif esc == "u":
                    hexdigits = self.s[self.i + 1 : self.i + 5]
                    if not re.fullmatch(r"[0-9A-Fa-f]{4}", hexdigits):
                        raise _parse_error("invalid hex escape sequence in string")
                    cp = int(hexdigits, 16)
                    self.i += 5
                    if 0xD800 <= cp < 0xDC00 and self.s[self.i : self.i + 2] == "\\u":
                        low = self.s[self.i + 2 : self.i + 6]
                        if re.fullmatch(r"[0-9A-Fa-f]{4}", low) and 0xDC00 <= int(low, 16) < 0xE000:
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                            self.i += 6
                    if 0xD800 <= cp < 0xE000:
                        raise _parse_error("invalid \\u escape (unpaired surrogate)")
                    if cp == 0:
                        raise _parse_error("\\u0000 makes no sense")
                    out.append(chr(cp))
                else:
                    raise _parse_error("invalid escape sequence in string")
                continue
            if ord(ch) < 0x20:
                raise _parse_error("invalid control character in string")
            out.append(ch)
            self.i += 1

    def obj(self) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        if self.peek() == "}":
            self.i += 1
            return out
        while True:
            ch = self.peek()
            if ch not in ("'", '"'):
                if ch == "":
                    raise _parse_error("premature EOI")
                raise _parse_error("key is not a string in object")
            key = self.string()
            if self.peek() != ":":
                raise _parse_error("missing : in object pair")
            self.i += 1
            value = self.value()
            if key in out:
                raise _parse_error("duplicate key")
            out[key] = value
            ch = self.peek()
            self.i += 1
            if ch == "}":
                return out
            if ch != ",":
                if ch == "":
                    raise _parse_error("premature EOI")
                raise _parse_error("expected separator in dict")

    def arr(self) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        if self.peek() == "]":
            self.i += 1
            return out
        while True:
            out.append(self.value())
            ch = self.peek()
            self.i += 1
            if ch == "]":
                return out
            if ch != ",":
                if ch == "":
                    raise _parse_error("premature EOI")
                raise _parse_error("expected separator in list")


def json_loads(text: str) -> Any:
    """Decode one QEMU-dialect JSON value.

    :raises OptionError: with QEMU's text.
    """
    parser = _Parser(text)
    try:
        value = parser.value()
        if parser.peek() != "":
            raise _JsonError("Expecting at most one JSON value")
    except _JsonError as exc:
        raise OptionError(str(exc)) from None
    return value
