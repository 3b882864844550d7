# SPDX-License-Identifier: MIT
"""The strict keyval flavour (util/keyval.c), used by qemu-storage-daemon, qemu-img, qemu-nbd.

Grammar, in QEMU's words::

    key-vals     = [ key-val { ',' key-val } [ ',' ] ]
    key-val      = key '=' val | help
    key          = key-fragment { '.' key-fragment }
    key-fragment = qapi-name | index
    qapi-name    = [ '__' / [a-z0-9.-]+ / '_' ] / [A-Za-z] [A-Za-z0-9_-]* /
    index        = / [0-9]+ /
    val          = { / [^,]+ / | ',,' }
    help         = 'help' | '?'

The first fragment of a key must be a QAPI name (``0=x`` is an ``Invalid parameter``); an
index may be any number of digits.  The first item may omit ``key=`` (implied key).  Dotted
keys build nested dictionaries; a dictionary whose keys are all indices becomes a list.  The
same key twice: the last wins.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from qompr.errors import OptionError

__all__ = ["KeyvalResult", "keyval_parse"]

_MAX_FRAGMENT = 127
_QAPI_NAME = re.compile(r"(?:__[A-Za-z0-9.-]+_)?[A-Za-z][A-Za-z0-9_-]*")
_INDEX = re.compile(r"[0-9]+")


@attrs.frozen
class KeyvalResult:
    """The nested dictionary and whether ``help``/``?`` was among the items."""

    qdict: dict[str, Any]
    help: bool


def _help_prefix(s: str) -> int:
    """``starts_with_help_option``: length of a leading ``?`` or ``help``, else 0."""
    if s.startswith("?"):
        return 1
    if s.startswith("help"):
        return 4
    return 0


def _put(cur: dict[str, Any], frag: str, value: str | None, key_so_far: str) -> Any:
    """``keyval_parse_put``: store a string (value) or descend into a dict (value None)."""
    old = cur.get(frag)
    if old is not None:
        if isinstance(old, str) != (value is not None):
            raise OptionError(f"Parameters '{key_so_far}.*' used inconsistently")
        if value is None:
            return old
    new: Any = value if value is not None else {}
    # Python dicts keep the first insertion position on replacement, like QDict's put.
    cur[frag] = new
    return new


def _parse_one(qdict: dict[str, Any], params: str, pos: int, implied_key: str | None,
               state: list[bool]) -> int:  # fmt: skip
    n = len(params)
    end = pos
    while end < n and params[end] not in "=,":
        end += 1
    length = end - pos
    key = params[pos:]
    implied_value: str | None = None
    if length and (end >= n or params[end] != "="):
        h = _help_prefix(key)
        if h == length:
            state[0] = True
            pos = end
            return pos + 1 if pos < n and params[pos] == "," else pos
        if implied_key is not None:
            implied_value = params[pos:end]
            key = implied_key
            length = len(implied_key)
    key_end = length
    cur = qdict
    s = 0
    frag_prev = ""
    while True:
        # After a dot, a run of digits is an index whatever its value: qemu-storage-daemon
        # answers "a.2147483648=x" and "a.99999999999999999999=x" with "Parameter 'a.0'
        # missing", and 128 digits with "Parameter fragment '...' is too long".
        m = _INDEX.match(key, s) if s != 0 else None
        if m is not None:
            flen = m.end() - s
        else:
            m = _QAPI_NAME.match(key, s)
            flen = m.end() - s if m is not None else 0
        if not flen or (s + flen < key_end and key[s + flen] != "."):
            raise OptionError(f"Invalid parameter '{key[:key_end]}'")
        if flen > _MAX_FRAGMENT:
            fragment = " fragment" if s != 0 or s + flen != key_end else ""
            raise OptionError(f"Parameter{fragment} '{key[s : s + flen]}' is too long")
        if s != 0:
            cur = _put(cur, frag_prev, None, key[: s - 1])
        frag_prev = key[s : s + flen]
        s += flen
        if s >= key_end or key[s] != ".":
            break
        s += 1
    if implied_value is not None:
        value = implied_value
        pos = end
        if pos < n and params[pos] == ",":
            pos += 1
    else:
        if s >= len(key) or key[s] != "=":
            raise OptionError(f"Expected '=' after parameter '{key[:s]}'")
        pos += s + 1
        out: list[str] = []
        while pos < n:
            ch = params[pos]
            if ch == ",":
                pos += 1
                if pos >= n or params[pos] != ",":
                    break
            out.append(params[pos])
            pos += 1
        value = "".join(out)
    _put(cur, frag_prev, value, key[:key_end])
    return pos


def _listify(node: dict[str, Any], prefix: str) -> Any:
    """``keyval_listify``: dicts whose keys are all indices become lists."""
    has_index = has_member = False
    for k, v in list(node.items()):
        if _INDEX.fullmatch(k):
            has_index = True
        else:
            has_member = True
        if has_index and has_member:
            raise OptionError(f"Parameters '{prefix}*' used inconsistently")
        if isinstance(v, dict):
            node[k] = _listify(v, f"{prefix}{k}.")
    if not has_index:
        return node
    elems = {int(k): v for k, v in node.items()}
    out = []
    for i in range(len(elems)):
        if i not in elems:
            raise OptionError(f"Parameter '{prefix}{i}' missing")
        out.append(elems[i])
    return out


def keyval_parse(params: str, implied_key: str | None = "qom-type") -> KeyvalResult:
    """Parse *params* as QEMU's ``keyval_parse`` does.

    :raises OptionError: with QEMU's text.
    """
    qdict: dict[str, Any] = {}
    help_state = [False]
    pos = 0
    key = implied_key
    while pos < len(params):
        pos = _parse_one(qdict, params, pos, key, help_state)
        key = None
    result = _listify(qdict, "")
    assert isinstance(result, dict)
    return KeyvalResult(result, help_state[0])
