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
from qompr.qom import argument_text

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


def _put(cur: dict[str, Any], frag: str, value: str | None, key: str, key_len: int) -> Any:
    """``keyval_parse_put``: store a string (value) or descend into a dict (value None).

    ``key[:key_len]`` names the key so far in the error; it is sliced only then, so that a key
    of thousands of dotted parts costs linear time.
    """
    old = cur.get(frag)
    if old is not None:
        if isinstance(old, str) != (value is not None):
            raise OptionError(f"Parameters '{key[:key_len]}.*' used inconsistently")
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
            cur = _put(cur, frag_prev, None, key, s - 1)
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
    _put(cur, frag_prev, value, key, key_end)
    return pos


class _Open:
    """A dictionary being listified, with where it hangs (for error texts)."""

    __slots__ = ("has_index", "has_member", "key", "keys", "next", "node", "parent")

    def __init__(self, node: dict[str, Any], parent: _Open | None, key: str) -> None:
        self.node = node
        self.parent = parent
        self.key = key
        self.keys = list(node)
        self.next = 0
        self.has_index = self.has_member = False

    def prefix(self) -> str:
        """The dotted key of this dictionary, with a final dot (empty at the top)."""
        parts: list[str] = []
        frame: _Open | None = self
        while frame is not None and frame.parent is not None:
            parts.append(frame.key)
            frame = frame.parent
        return "".join(f"{part}." for part in reversed(parts))


def _listify(root: dict[str, Any]) -> Any:
    """``keyval_listify``: dicts whose keys are all indices become lists.

    Depth first as QEMU's recursion, with the same first error, but on an explicit stack:
    a key may have as many dotted parts as an argument has room for.
    """
    stack = [_Open(root, None, "")]
    while True:
        top = stack[-1]
        if top.next < len(top.keys):
            k = top.keys[top.next]
            if _INDEX.fullmatch(k):
                top.has_index = True
            else:
                top.has_member = True
            if top.has_index and top.has_member:
                raise OptionError(f"Parameters '{top.prefix()}*' used inconsistently")
            v = top.node[k]
            if isinstance(v, dict):
                stack.append(_Open(v, top, k))
            else:
                top.next += 1
            continue
        done = _as_list(top) if top.has_index else top.node
        stack.pop()
        if not stack:
            return done
        parent = stack[-1]
        parent.node[parent.keys[parent.next]] = done
        parent.next += 1


def _as_list(frame: _Open) -> list[Any]:
    elems = {int(k): v for k, v in frame.node.items()}
    out = []
    for i in range(len(elems)):
        if i not in elems:
            raise OptionError(f"Parameter '{frame.prefix()}{i}' missing")
        out.append(elems[i])
    return out


def keyval_parse(params: str, implied_key: str | None = "qom-type") -> KeyvalResult:
    """Parse *params* as QEMU's ``keyval_parse`` does.

    :raises OptionError: with QEMU's text.
    """
    params = argument_text(params)
    qdict: dict[str, Any] = {}
    help_state = [False]
    pos = 0
    key = implied_key
    while pos < len(params):
        pos = _parse_one(qdict, params, pos, key, help_state)
        key = None
    result = _listify(qdict)
    assert isinstance(result, dict)
    return KeyvalResult(result, help_state[0])
