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
value``.  Work is done on the argument's bytes (:func:`qompr.qom.argument_bytes`:
``surrogateescape`` for what was not UTF-8), so that invalid bytes and QEMU's modified-UTF-8
``\\u0000`` (C0 80) behave as in QEMU.  Nothing here recurses: nesting is bounded by the
streamer's 1,024 levels, not by Python's stack, and numbers of any length cost only their
lexing.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from qompr.errors import OptionError
from qompr.qom import argument_bytes

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
    i = i + 1 if data[i] == 0x30 else _digits_end(data, i)  # a leading zero stands alone
    kind = _Tok.INTEGER
    if i < n and data[i] == 0x2E:  # fraction: at least one digit
        i += 1
        end = _digits_end(data, i)
        if end == i:
            return err(i + 1)
        i, kind = end, _Tok.FLOAT
    if i < n and data[i] in b"eE":  # exponent: a sign, then at least one digit
        i += 1
        if i < n and data[i] in b"+-":
            i += 1
        end = _digits_end(data, i)
        if end == i:
            return err(i + 1)
        i, kind = end, _Tok.FLOAT
    return _Token(kind, data[start:i]), i


def _digits_end(data: bytes, i: int) -> int:
    """Where the run of digits starting at *i* ends (*i* itself if there is none)."""
    while i < len(data) and data[i] in _DIGITS:
        i += 1
    return i


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
    if cp < lo or not _valid_codepoint(cp):
        return -1
    return need + 1


def _valid_codepoint(cp: int) -> bool:
    """QEMU's ``is_valid_codepoint`` (util/unicode.c): no surrogates, nothing beyond
    U+10FFFF, and no noncharacters (U+FDD0..U+FDEF and every U+xxFFFE, U+xxFFFF)."""
    if cp < 0 or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
        return False
    return not (0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE)


def _hex4(raw: bytes, i: int) -> int:
    chunk = raw[i : i + 4]
    if len(chunk) != 4 or any(c not in b"0123456789abcdefABCDEF" for c in chunk):
        return -1
    return int(chunk, 16)


def _mod_utf8(cp: int) -> bytes | None:
    if cp == 0:
        return b"\xc0\x80"
    if not _valid_codepoint(cp):
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


class _Member:
    """An open ``{`` or ``[`` while parsing: what it holds so far, and for an object the key
    of the member whose value comes next (``None``: a key comes next)."""

    __slots__ = ("closer", "container", "key", "noun")

    def __init__(self, opener: _Tok) -> None:
        self.container: dict[str, Any] | list[Any]
        if opener is _Tok.LCURLY:
            self.container, self.closer, self.noun = {}, _Tok.RCURLY, "dict"
        else:
            self.container, self.closer, self.noun = [], _Tok.RSQUARE, "list"
        self.key: str | None = None


def _scalar(tok: _Token) -> Any:
    if tok.kind is _Tok.STRING:
        return _parse_string(tok.text)
    if tok.kind is _Tok.INTEGER:
        return _integer(tok.text)
    if tok.kind is _Tok.FLOAT:
        return float(tok.text)  # strtod: beyond the double range it is inf, as in QEMU
    if tok.kind is _Tok.KEYWORD:
        word = tok.text.decode("ascii")
        if word in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[word]
        raise _ParseError(f"JSON parse error, invalid keyword '{word}'")
    raise _ParseError("JSON parse error, expecting value")


def _integer(text: bytes) -> int | float:
    """``parse_literal``: int64, else uint64 (not for negatives), else a double.

    Decided on the digit count first: more than 20 digits is beyond 64 bits, and converting a
    hostile 5,000-digit integer would cost time and hit Python's int-string limit.
    """
    if len(text.lstrip(b"-")) <= 20:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return float(text)


def _parse_tokens(tokens: list[_Token]) -> Any:
    """``json_parser_parse``: one value from a balanced token run.

    Iterative, with the open containers on an explicit stack: the streamer admits 1,024
    levels, which would exhaust Python's stack in a recursive parser.  The errors and their
    order are those of QEMU's recursive descent (``parse_value``, ``parse_object``,
    ``parse_pair``, ``parse_array``).
    """
    stack: list[_Member] = []
    pos, n = 0, len(tokens)

    def pop() -> _Token:
        nonlocal pos
        if pos >= n:
            raise _ParseError("JSON parse error, premature EOI")
        pos += 1
        return tokens[pos - 1]

    while True:
        # A value starts at pos.
        tok = pop()
        value: Any
        if tok.kind is _Tok.LCURLY or tok.kind is _Tok.LSQUARE:
            member = _Member(tok.kind)
            if pos >= n:
                raise _ParseError("JSON parse error, premature EOI")
            if tokens[pos].kind is not member.closer:
                stack.append(member)
                continue  # its first member (an object's first key)
            pos += 1
            value = member.container
        else:
            value = _scalar(tok)
        # A value is complete: hand it to the open containers, closing those that end.
        while stack:
            top = stack[-1]
            if isinstance(top.container, list):
                top.container.append(value)
            elif top.key is None:
                if not isinstance(value, str):
                    raise _ParseError("JSON parse error, key is not a string in object")
                if pop().kind is not _Tok.COLON:
                    raise _ParseError("JSON parse error, missing : in object pair")
                top.key = value
                break  # the member's value comes next
            else:
                if top.key in top.container:
                    raise _ParseError("JSON parse error, duplicate key")
                top.container[top.key] = value
                top.key = None
            tok = pop()
            if tok.kind is top.closer:
                value = stack.pop().container
                continue
            if tok.kind is not _Tok.COMMA:
                raise _ParseError(f"JSON parse error, expected separator in {top.noun}")
            break
        else:
            return value


def json_loads(text: str) -> Any:
    """Decode one QEMU-dialect JSON value from an ``-object`` argument.

    :raises OptionError: with QEMU's text.
    """
    data = argument_bytes(text)
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
