# SPDX-License-Identifier: MIT
"""The reverse of parsing: an object back to an ``-object`` string or its JSON form.

Both forms make real QEMU create the same object: ``,`` in values is doubled (QemuOpts and
keyval agree on that), and JSON keeps real types.
"""

from __future__ import annotations

from typing import Any

from qompr.errors import ObjectError
from qompr.qom import Object
from qompr.qom import argument_bytes

__all__ = ["escape_value", "to_json", "to_json_string", "to_keyval"]


def escape_value(value: str) -> str:
    """Escape a value for a key=value string: ``,`` becomes ``,,``."""
    return value.replace(",", ",,")


def _set_props(obj: Object) -> list[tuple[str, Any, str]]:
    """(name, JSON value, string value) of every settable property given a value."""
    out = []
    for prop in obj.properties():
        if prop.settable and prop.is_set(obj):
            value = prop.get(obj)
            out.append((prop.name, prop.to_json(value), prop.to_string(value)))
    return out


def to_keyval(obj: Object) -> str:
    """``TYPE,id=ID,key=value,...`` for a user-created object."""
    if obj.id is None:
        raise ValueError(f"{obj!r} is not in the object tree")
    parts = [obj.typename, f"id={escape_value(obj.id)}"]
    parts += [f"{name}={escape_value(text)}" for name, _, text in _set_props(obj)]
    return ",".join(parts)


def to_json(obj: Object) -> dict[str, Any]:
    """``{"qom-type": TYPE, "id": ID, key: typed value, ...}``.

    A string holding QEMU's modified-UTF-8 NUL (C0 80, from a JSON ``\\u0000``) has U+0000
    there, which JSON writes as ``\\u0000`` and QEMU reads back as C0 80.

    :raises ObjectError: a string value whose bytes QEMU's JSON parser cannot produce (not
        UTF-8, or a noncharacter): only the key=value form (:func:`to_keyval`) carries it.
    """
    if obj.id is None:
        raise ValueError(f"{obj!r} is not in the object tree")
    out: dict[str, Any] = {"qom-type": obj.typename, "id": obj.id}
    for name, value, _ in _set_props(obj):
        out[name] = _json_text(obj, name, value) if isinstance(value, str) else value
    return out


def _json_text(obj: Object, name: str, value: str) -> str:
    data = argument_bytes(value)
    try:
        text = data.replace(b"\xc0\x80", b"\0").decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or any(_noncharacter(ord(ch)) for ch in text if ord(ch) >= 0xFDD0):
        raise ObjectError(
            f"Property '{name}' of '{obj.id}' cannot be written as JSON: QEMU's JSON parser "
            "refuses its bytes (not UTF-8, or a Unicode noncharacter)",
            hint="The key=value form carries them.",
        )
    return text


def _noncharacter(cp: int) -> bool:
    """Refused by QEMU's JSON parser in any spelling (``is_valid_codepoint``)."""
    return 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE


def to_json_string(obj: Object) -> str:
    """:func:`to_json` as compact JSON text, ready for ``-object``."""
    import json  # here: reading -object strings (every --object run) needs no json module

    return json.dumps(to_json(obj), separators=(",", ":"), ensure_ascii=False)
