# SPDX-License-Identifier: MIT
"""The type table: which QOM types one program knows (QEMU's ``type_table``)."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

from qompr.errors import ObjectError
from qompr.errors import PluginError
from qompr.qom._object import USER_CREATABLE
from qompr.qom._object import Container
from qompr.qom._object import Interface
from qompr.qom._object import Object
from qompr.qom._object import TypeInfo
from qompr.qom._object import UserCreatable

__all__ = ["TypeRegistry"]


class TypeRegistry:
    """Types by name.  Starts with QOM's own: ``object``, ``container``, ``interface`` and
    ``user-creatable``; everything else is registered by plugins (built-ins included)."""

    def __init__(self) -> None:
        self._types: dict[str, TypeInfo] = {}
        for cls in (Object, Container, Interface, UserCreatable):
            self.register(cls)

    def register(self, cls: type[Object]) -> TypeInfo:
        """Register a class declared with ``qom_type=``; parents must come first.

        Registering the same class twice is harmless; a *different* class under a name that
        is taken is a :class:`~qompr.errors.PluginError`.
        """
        info = vars(cls).get("__qom_info__")
        if not isinstance(info, TypeInfo):
            raise PluginError(f"class {cls.__qualname__} does not declare a QOM type (qom_type=)")
        known = self._types.get(info.name)
        if known is not None:
            if known.cls is cls:
                return known
            raise PluginError(
                f"type '{info.name}' is already registered by {known.cls.__module__}."
                f"{known.cls.__qualname__}"
            )
        if info.parent is not None and info.parent not in self._types:
            raise PluginError(f"type '{info.name}': parent type '{info.parent}' is not registered")
        for iface in info.interfaces:
            if iface not in self._types or not self.type_is_a(iface, "interface"):
                raise PluginError(f"type '{info.name}': '{iface}' is not a registered interface")
        self._types[info.name] = info
        if "class_init" in vars(cls):
            cls.class_init()
        return info

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[TypeInfo]:
        return iter(self._types.values())

    def lookup(self, name: str) -> TypeInfo | None:
        """``type_get_by_name``: the TypeInfo or ``None``."""
        return self._types.get(name)

    def get(self, name: str) -> TypeInfo:
        """Like :meth:`lookup`, raising QEMU's ``invalid object type: NAME`` when unknown."""
        info = self._types.get(name)
        if info is None:
            raise ObjectError(f"invalid object type: {name}")
        return info

    def ancestry(self, name: str) -> Iterator[TypeInfo]:
        """The type and its parents, nearest first."""
        info = self._types.get(name)
        while info is not None:
            yield info
            info = self._types.get(info.parent) if info.parent is not None else None

    def type_is_a(self, name: str, target: str) -> bool:
        """``object_class_dynamic_cast``: *name* is *target*, derives from it, or implements
        it (interfaces are inherited, and an interface's own parents count too)."""
        for info in self.ancestry(name):
            if info.name == target:
                return True
            for iface in info.interfaces:
                if any(i.name == target for i in self.ancestry(iface)):
                    return True
        return False

    def is_user_creatable(self, name: str) -> bool:
        return self.type_is_a(name, USER_CREATABLE)

    def creatable_types(self) -> list[str]:
        """Names ``-object`` may create: user-creatable and not abstract, sorted (this is the
        ``ObjectType`` enum of QEMU's QAPI schema)."""
        return sorted(
            i.name
            for i in self._types.values()
            if not i.abstract and self.is_user_creatable(i.name)
        )

    def list_types(
        self, implements: str | None = None, abstract: bool = False
    ) -> list[dict[str, Any]]:
        """QMP ``qom-list-types``: ``[{"name", "abstract"?, "parent"?}]``.

        :param implements: only types that are or derive from / implement this one.
        :param abstract: include abstract types (excluded by default, as in QEMU).
        """
        out: list[dict[str, Any]] = []
        for info in self._types.values():
            if info.abstract and not abstract:
                continue
            if implements is not None and not self.type_is_a(info.name, implements):
                continue
            entry: dict[str, Any] = {"name": info.name}
            if info.abstract:
                entry["abstract"] = True
            if info.parent is not None:
                entry["parent"] = info.parent
            out.append(entry)
        return out

    def register_all(self, classes: Iterable[type[Object]]) -> None:
        """Register classes in an order that puts parents first."""
        pending = list(classes)
        while pending:
            progress = False
            for cls in list(pending):
                info = vars(cls).get("__qom_info__")
                if isinstance(info, TypeInfo) and (info.parent is None or info.parent in self):
                    self.register(cls)
                    pending.remove(cls)
                    progress = True
            if not progress:
                self.register(pending[0])  # raises the precise error
