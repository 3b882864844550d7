# SPDX-License-Identifier: MIT
"""The QemuOpts flavour of ``key=value`` strings, as ``qemu-system-x86_64 -object`` reads them.

Rules (util/qemu-option.c, QEMU 7.2), for the ``object`` option list, which has the implied
first key ``qom-type`` and accepts any key:

* Items are split at ``,``; in a *value* ``,,`` is a literal comma.  A name ends at the first
  ``=`` or ``,`` and cannot contain either.
* The first item without ``=`` is the value of ``qom-type``.  Any later item without ``=`` is a
  short-form boolean: ``foo`` means ``foo=on``, ``nofoo`` means ``foo=off``, with a
  deprecation warning (not for ``help``/``?``).
* ``id`` is looked up first: the *first* ``id=`` item wins and is checked before anything else
  (well-formed, not a duplicate of an earlier ``-object`` in the same list).  For other keys
  every occurrence is kept and the visitor takes the last.
* ``help`` / ``?`` as an item name asks for help (there is no special parsing: the object list
  accepts any key).
"""

from __future__ import annotations

import attrs

from qompr.errors import OptionError
from qompr.qom import ID_HINT
from qompr.qom import argument_text
from qompr.qom import id_wellformed

__all__ = ["QemuOpts", "QemuOptsList", "is_help_option"]


def is_help_option(name: str) -> bool:
    """QEMU's ``is_help_option``: exactly ``help`` or ``?``."""
    return name in ("help", "?")


@attrs.frozen
class QemuOpts:
    """One parsed option: its id and its (name, value) items in order, ``id`` excluded.

    :param warnings: the deprecation warnings QEMU prints while parsing, each as
        ``(message, hint)``.
    """

    id: str | None
    items: tuple[tuple[str, str], ...]
    warnings: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        """``qemu_opt_get``: the last value given for *name*."""
        for key, value in reversed(self.items):
            if key == name:
                return value
        return None

    def has_help(self) -> bool:
        """``qemu_opt_has_help_opt``: any item *named* ``help`` or ``?``."""
        return any(is_help_option(key) for key, _ in self.items)

    def to_dict(self) -> dict[str, str]:
        """What the opts visitor sees: the last value per key, keys in first-seen order and
        ``id`` last (the order ``opts_start_struct`` fills its table in)."""
        out: dict[str, str] = {}
        for key, value in self.items:
            out[key] = value
        if self.id is not None:
            out["id"] = self.id
        return out


def _get_value(params: str, pos: int) -> tuple[str, int]:
    """``get_opt_value``: read to the next single ``,``; ``,,`` is a literal comma."""
    out: list[str] = []
    n = len(params)
    while pos < n:
        ch = params[pos]
        if ch == ",":
            if pos + 1 < n and params[pos + 1] == ",":
                out.append(",")
                pos += 2
                continue
            break
        out.append(ch)
        pos += 1
    return "".join(out), pos


def _name_value(
    params: str, pos: int, firstname: str | None, warn: list[tuple[str, str]] | None
) -> tuple[str, str, int]:
    """``get_opt_name_value``: one item starting at *pos*; returns name, value, next pos."""
    end = pos
    while end < len(params) and params[end] not in "=,":
        end += 1
    if end >= len(params) or params[end] != "=":
        if firstname is not None:
            name = firstname
            value, pos = _get_value(params, pos)
        else:
            name = params[pos:end]
            pos = end
            prefix = ""
            if name.startswith("no"):
                name, value, prefix = name[2:], "off", "no"
                is_help = False
            else:
                value = "on"
                is_help = is_help_option(name)
            if not is_help and warn is not None:
                hint_value = ("on" if prefix else "off") if name == "delay" else value
                hint_name = "nodelay" if name == "delay" else name
                warn.append(
                    (
                        f"short-form boolean option '{prefix}{name}' deprecated",
                        f"Please use {hint_name}={hint_value} instead",
                    )
                )
    else:
        name = params[pos:end]
        value, pos = _get_value(params, end + 1)
    if pos < len(params) and params[pos] == ",":
        pos += 1
    return name, value, pos


class QemuOptsList:
    """A QemuOpts list (``qemu_find_opts("object")``): remembers ids across options, so a
    second ``-object`` with the same id fails with ``Duplicate ID 'x' for object``.

    :param name: the list name used in that message.
    :param implied_opt_name: the key of a first item without ``=``.
    """

    def __init__(self, name: str = "object", implied_opt_name: str = "qom-type") -> None:
        self.name = name
        self.implied_opt_name = implied_opt_name
        self._ids: set[str] = set()

    def parse(self, params: str) -> QemuOpts:
        """``qemu_opts_parse_noisily(list, params, permit_abbrev=true)``.

        :raises OptionError: a malformed or duplicate id (the only parse errors of an
            accept-any list).
        """
        params = argument_text(params)
        # opts_parse_id: the first item *named* id, read without implied key or warnings.
        opt_id: str | None = None
        pos = 0
        while pos < len(params):
            name, value, pos = _name_value(params, pos, None, None)
            if name == "id":
                opt_id = value
                break
        if opt_id is not None:
            if not id_wellformed(opt_id):
                raise OptionError("Parameter 'id' expects an identifier", hint=ID_HINT)
            if opt_id in self._ids:
                raise OptionError(f"Duplicate ID '{opt_id}' for {self.name}")
        warnings: list[tuple[str, str]] = []
        items: list[tuple[str, str]] = []
        firstname: str | None = self.implied_opt_name
        pos = 0
        while pos < len(params):
            name, value, pos = _name_value(params, pos, firstname, warnings)
            firstname = None
            if name != "id":
                items.append((name, value))
        if opt_id is not None:
            self._ids.add(opt_id)
        return QemuOpts(opt_id, tuple(items), tuple(warnings))
