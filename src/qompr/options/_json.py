# SPDX-License-Identifier: MIT
"""QEMU's JSON dialect, as ``qobject_from_json`` reads an ``-object {...}`` argument.

QEMU reads JSON in three stages, and which stage notices a problem decides the message:

1. the **lexer** (qobject/json-lexer.c) cuts bytes into tokens; a byte that cannot continue
   or start a token is an error token, reported at once as ``JSON parse error, stray 'TEXT'``
   (TEXT is the bad token so far).  Strings may use single quotes; raw bytes below 0x20 and
   the bytes 0xFE/0xFF end a string with an error.
2. the **streamer** (json-streamer.c) collects tokens until braces and brackets balance, then
   hands them to the parser; more than 1024 open levels is ``JSON nesting depth limit
   exceeded``, and input that ends inside a value is parsed as it is (``premature EOI``).
3. the **parser** (json-parser.c) builds the value: escapes and UTF-8 are checked here,
   duplicate member names are refused.

The first error wins; a second value after a complete one is ``Expecting at most one JSON
value``.  Work is done on the argument's bytes (``surrogateescape`` for what was not UTF-8), so
that invalid bytes and QEMU's modified-UTF-8 ``\\u0000`` (C0 80) behave as in QEMU.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from qompr.errors import OptionError

__all__ = ["json_loads"]

MAX_NESTING = 1024


class _Tok(enum.Enum):
    LCURLY = "{"
    RCURLY = "}"
    LSQUARE = "["
    RSQUARE = "]"
    COLON = ":"
    COMMA = ","
    INTEGER = "integer"
    FLOAT = "float"
    KEYWORD = "keyword"
    STRING = "string"
    ERROR = "error"


@attrs.frozen
class _Token:
    kind: _Tok
    text: bytes


_PUNCT = {ord("{"): _Tok.LCURLY, ord("}"): _Tok.RCURLY, ord("["): _Tok.LSQUARE,
          ord("]"): _Tok.RSQUARE, ord(":"): _Tok.COLON, ord(","): _Tok.COMMA}  # fmt: skip
_WS = b" \t\r\n"
_DIGITS = b"0123456789"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"


def _lex(data: bytes) -> list[_Token]:
    """Tokens up to and including the first error token (nothing after it matters)."""
    out: list[_Token] = []
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c in _WS:
            i += 1
            continue
        if c in _PUNCT:
            out.append(_Token(_PUNCT[c], data[i : i + 1]))
            i += 1
            continue
        start = i
        if c in (0x22, 0x27):  # " or '
            i += 1
            while True:
                if i >= n:  # end of input inside a string: the flush NUL is the bad byte
                    out.append(_Token(_Tok.ERROR, data[start:i]))
                    return out
                b = data[i]
                if b < 0x20 or b > 0xFD:
                    out.append(_Token(_Tok.ERROR, data[start : i + 1]))
                    return out
                if b == 0x5C:  # backslash: the next byte is taken as it is (parser checks)
                    if i + 1 >= n:
                        out.append(_Token(_Tok.ERROR, data[start : i + 1]))
                        return out
                    nb = data[i + 1]
                    if nb < 0x20 or nb > 0xFD:
                        out.append(_Token(_Tok.ERROR, data[start : i + 2]))
                        return out
                    i += 2
                    continue
                i += 1
                if b == c:
                    out.append(_Token(_Tok.STRING, data[start:i]))
                    break
            continue
        if c in _LOWER:
            while i < n and data[i] in _LOWER:
                i += 1
            out.append(_Token(_Tok.KEYWORD, data[start:i]))
            continue
        if c == 0x2D or c in _DIGITS:  # '-' or a digit: a number
            tok, i = _lex_number(data, i)
            out.append(tok)
            if tok.kind is _Tok.ERROR:
                return out
            continue
        out.append(_Token(_Tok.ERROR, data[i : i + 1]))
        return out
    return out


def _lex_number(data: bytes, i: int) -> tuple[_Token, int]:
    n, start = len(data), i

    def err(end: int) -> tuple[_Token, int]:
        return _Token(_Tok.ERROR, data[start : min(end, n)]), end

    if data[i] == 0x2D:
        i += 1
        if i >= n or data[i] not in _DIGITS:
            return err(i + 1)
    if data[i] == 0x30:  # a leading zero stands alone
        i += 1
    else:
        while i < n and data[i] in _DIGITS:
            i += 1
    kind = _Tok.INTEGER
    if i < n and data[i] == 0x2E:  # fraction: at least one digit
        i += 1
        if i >= n or data[i] not in _DIGITS:
            return err(i + 1)
        while i < n and data[i] in _DIGITS:
            i += 1
        kind = _Tok.FLOAT
    if i < n and data[i] in b"eE":
        i += 1
        if i < n and data[i] in b"+-":
            i += 1
        if i >= n or data[i] not in _DIGITS:
            return err(i + 1)
        while i < n and data[i] in _DIGITS:
            i += 1
        kind = _Tok.FLOAT
    return _Token(kind, data[start:i]), i


class _ParseError(Exception):
    pass


def _utf8_char(raw: bytes, i: int) -> int:
    """Length of the (modified) UTF-8 sequence at *i*, or -1 (``mod_utf8_codepoint``)."""
    b = raw[i]
    if b < 0x80:
        return 1 if b else -1
    if 0xC2 <= b <= 0xDF or b == 0xC0:
        need, lo = 1, 0x80
    elif 0xE0 <= b <= 0xEF:
        need, lo = 2, 0x800
    elif 0xF0 <= b <= 0xF4:
        need, lo = 3, 0x10000
    else:
        return -1
    seq = raw[i : i + need + 1]
    if len(seq) != need + 1 or any(x & 0xC0 != 0x80 for x in seq[1:]):
        return -1
    cp = b & (0x3F >> need)
    for x in seq[1:]:
        cp = (cp << 6) | (x & 0x3F)
    if b == 0xC0:  # only C0 80 (modified UTF-8 NUL) is allowed from the overlong forms
        return 2 if seq == b"\xc0\x80" else -1
    if cp < lo or 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
        return -1
    return need + 1


def _hex4(raw: bytes, i: int) -> int:
    chunk = raw[i : i + 4]
    if len(chunk) != 4 or any(c not in b"0123456789abcdefABCDEF" for c in chunk):
        return -1
    return int(chunk, 16)


def _mod_utf8(cp: int) -> bytes | None:
    if cp == 0:
        return b"\xc0\x80"
    if cp < 0 or 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
        return None
    return chr(cp).encode("utf-8")


_SIMPLE_ESCAPES = {ord('"'): b'"', ord("'"): b"'", ord("\\"): b"\\", ord("/"): b"/",
                   ord("b"): b"\b", ord("f"): b"\f", ord("n"): b"\n", ord("r"): b"\r",
                   ord("t"): b"\t"}  # fmt: skip


def _parse_string(raw: bytes) -> str:
    """A string token (quotes included) to its value (``parse_string``)."""
    body = raw[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        b = body[i]
        if b == 0x5C:
            esc = body[i + 1]
            if esc in _SIMPLE_ESCAPES:
                out += _SIMPLE_ESCAPES[esc]
                i += 2
                continue
            if esc != ord("u"):
                raise _ParseError("JSON parse error, invalid escape sequence in string")
            beg = i
            cp = _hex4(body, i + 2)
            i += 6
            if 0xD800 <= cp <= 0xDBFF and body[i : i + 2] == b"\\u":
                trailing = _hex4(body, i + 2)
                if 0xDC00 <= trailing <= 0xDFFF:
                    cp = 0x10000 + ((cp & 0x3FF) << 10) + (trailing & 0x3FF)
                    i += 6
                else:
                    cp = -1
            encoded = _mod_utf8(cp)
            if encoded is None:
                shown = body[beg:i].decode("utf-8", "surrogateescape")
                raise _ParseError(f"JSON parse error, {shown} is not a valid Unicode character")
            out += encoded
            continue
        length = _utf8_char(body, i)
        if length < 0:
            raise _ParseError("JSON parse error, invalid UTF-8 sequence in string")
        out += body[i : i + length]
        i += length
    return out.decode("utf-8", "surrogateescape")


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def pop(self) -> _Token | None:
        tok = self.peek()
        if tok is not None:
            self.pos += 1
        return tok

    def value(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise _ParseError("JSON parse error, premature EOI")
        if tok.kind is _Tok.LCURLY:
            return self.obj()
        if tok.kind is _Tok.LSQUARE:
            return self.arr()
        self.pop()
        if tok.kind is _Tok.STRING:
            return _parse_string(tok.text)
        if tok.kind is _Tok.INTEGER:
            value = int(tok.text)
            # qemu_strtoi64, then qemu_strtou64, else a double (parse_literal).
            return value if -(2**63) <= value < 2**64 else float(value)
        if tok.kind is _Tok.FLOAT:
            return float(tok.text)
        if tok.kind is _Tok.KEYWORD:
            word = tok.text.decode("ascii")
            if word in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[word]
            raise _ParseError(f"JSON parse error, invalid keyword '{word}'")
        raise _ParseError("JSON parse error, expecting value")

    def _pop_or_eoi(self) -> _Token:
        tok = self.pop()
        if tok is None:
            raise _ParseError("JSON parse error, premature EOI")
        return tok

    def pair(self, out: dict[str, Any]) -> None:
        if self.peek() is None:
            raise _ParseError("JSON parse error, premature EOI")
        key = self.value()
        if not isinstance(key, str):
            raise _ParseError("JSON parse error, key is not a string in object")
        if self._pop_or_eoi().kind is not _Tok.COLON:
            raise _ParseError("JSON parse error, missing : in object pair")
        value = self.value()
        if key in out:
            raise _ParseError("JSON parse error, duplicate key")
        out[key] = value

    def obj(self) -> dict[str, Any]:
        self.pop()
        out: dict[str, Any] = {}
        peek = self.peek()
        if peek is None:
            raise _ParseError("JSON parse error, premature EOI")
        if peek.kind is _Tok.RCURLY:
            self.pop()
            return out
        self.pair(out)
        tok = self._pop_or_eoi()
        while tok.kind is not _Tok.RCURLY:
            if tok.kind is not _Tok.COMMA:
                raise _ParseError("JSON parse error, expected separator in dict")
            self.pair(out)
            tok = self._pop_or_eoi()
        return out

    def arr(self) -> list[Any]:
        self.pop()
        out: list[Any] = []
        peek = self.peek()
        if peek is None:
            raise _ParseError("JSON parse error, premature EOI")
        if peek.kind is _Tok.RSQUARE:
            self.pop()
            return out
        out.append(self.value())
        tok = self._pop_or_eoi()
        while tok.kind is not _Tok.RSQUARE:
            if tok.kind is not _Tok.COMMA:
                raise _ParseError("JSON parse error, expected separator in list")
            out.append(self.value())
            tok = self._pop_or_eoi()
        return out


def _parse_tokens(tokens: list[_Token]) -> Any:
    return _Parser(tokens).value()


def json_loads(text: str) -> Any:
    """Decode one QEMU-dialect JSON value from an ``-object`` argument.

    :raises OptionError: with QEMU's text.
    """
    data = text.encode("utf-8", "surrogateescape")
    results: list[Any] = []
    error: str | None = None

    def emit(value: Any = None, err: str | None = None) -> None:
        # consume_json: the first error sticks; a second value is an error.
        nonlocal error
        if error is not None:
            return
        if results:
            error = "Expecting at most one JSON value"
            return
        if err is not None:
            error = err
        else:
            results.append(value)

    pending: list[_Token] = []
    depth_curly = depth_square = 0
    for tok in _lex(data):
        if tok.kind is _Tok.ERROR:
            emit(err=f"JSON parse error, stray '{tok.text.decode('utf-8', 'surrogateescape')}'")
            break
        if tok.kind is _Tok.LCURLY:
            depth_curly += 1
        elif tok.kind is _Tok.RCURLY:
            depth_curly -= 1
        elif tok.kind is _Tok.LSQUARE:
            depth_square += 1
        elif tok.kind is _Tok.RSQUARE:
            depth_square -= 1
        if depth_curly + depth_square > MAX_NESTING:
            emit(err="JSON nesting depth limit exceeded")
            pending, depth_curly, depth_square = [], 0, 0
            continue
        pending.append(tok)
        if (depth_curly > 0 or depth_square > 0) and depth_curly >= 0 and depth_square >= 0:
            continue
        try:
            emit(_parse_tokens(pending))
        except _ParseError as exc:
            emit(err=str(exc))
        pending, depth_curly, depth_square = [], 0, 0
    if pending and error is None:
        try:
            emit(_parse_tokens(pending))
        except _ParseError as exc:
            emit(err=str(exc))
    if error is not None:
        raise OptionError(error)
    if not results:
        raise OptionError("JSON parse error, premature EOI")
    return results[0]
