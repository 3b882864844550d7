# SPDX-License-Identifier: MIT
"""The reverse of parsing: an object back to an ``-object`` string or its JSON form.

Both forms make real QEMU create the same object: ``,`` in values is doubled (QemuOpts and
keyval agree on that), and JSON keeps real types.
"""

from __future__ import annotations

import json
from typing import Any

from qompr.qom import Object

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
    """``{"qom-type": TYPE, "id": ID, key: typed value, ...}``."""
    if obj.id is None:
        raise ValueError(f"{obj!r} is not in the object tree")
    out: dict[str, Any] = {"qom-type": obj.typename, "id": obj.id}
    out.update({name: value for name, value, _ in _set_props(obj)})
    return out


def to_json_string(obj: Object) -> str:
    """:func:`to_json` as compact JSON text, ready for ``-object``."""
    return json.dumps(to_json(obj), separators=(",", ":"), ensure_ascii=False)
