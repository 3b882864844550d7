# SPDX-License-Identifier: MIT
"""The type table: which QOM types one program knows (QEMU's ``type_table``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
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

__all__ = ["TypeLoader", "TypeRegistry"]

#: Imports and returns the class of one type (see :meth:`TypeRegistry.register_lazy`).
TypeLoader = Callable[[], type[Object]]


class TypeRegistry:
    """Types by name.  Starts with QOM's own: ``object``, ``container``, ``interface`` and
    ``user-creatable``; everything else is registered by plugins (built-ins included).

    A type may be registered by name only (:meth:`register_lazy`): its module is imported
    the first time the type is looked up, so a program pays only for the types it uses
    (``qompr-pr-helper --backend pr-manager-emulated`` never imports the multipath bindings).
    Listing the types (:meth:`creatable_types`, :meth:`list_types`, iterating) loads them all.
    """

    def __init__(self) -> None:
        self._types: dict[str, TypeInfo] = {}
        self._pending: dict[str, TypeLoader] = {}
        self._loading = threading.RLock()
        for cls in (Object, Container, Interface, UserCreatable):
            self.register(cls)

    def register_lazy(self, name: str, load: TypeLoader) -> None:
        """Know type *name* now; call *load* for its class (and register it) when the type
        is first looked up.  A name already registered keeps its class (*load* is dropped);
        registering another class under a pending name loads the pending one first, so the
        conflict is reported as for :meth:`register`."""
        with self._loading:
            if name not in self._types:
                self._pending.setdefault(name, load)

    def _resolve(self, name: str) -> None:
        """Load and register the pending type *name*, if it is one."""
        if name not in self._pending:
            return
        with self._loading:
            load = self._pending.pop(name, None)
            if load is None:
                return  # another thread loaded it meanwhile
            try:
                cls = load()
            except ImportError as exc:
                raise PluginError(f"type '{name}' failed to load: {exc}") from exc
            info = vars(cls).get("__qom_info__")
            if isinstance(info, TypeInfo) and info.name != name:
                raise PluginError(
                    f"type '{name}': its loader gave {cls.__qualname__}, which declares "
                    f"'{info.name}'"
                )
            self.register(cls)

    def _resolve_all(self) -> None:
        while self._pending:
            self._resolve(next(iter(self._pending)))

    def register(self, cls: type[Object]) -> TypeInfo:
        """Register a class declared with ``qom_type=``; parents must come first.

        Registering the same class twice is harmless; a *different* class under a name that
        is taken is a :class:`~qompr.errors.PluginError`.
        """
        info = vars(cls).get("__qom_info__")
        if not isinstance(info, TypeInfo):
            raise PluginError(f"class {cls.__qualname__} does not declare a QOM type (qom_type=)")
        self._resolve(info.name)
        if info.parent is not None:
            self._resolve(info.parent)
        for iface in info.interfaces:
            self._resolve(iface)
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
        return name in self._types or name in self._pending

    def __iter__(self) -> Iterator[TypeInfo]:
        self._resolve_all()
        return iter(list(self._types.values()))

    def lookup(self, name: str) -> TypeInfo | None:
        """``type_get_by_name``: the TypeInfo or ``None`` (a pending type is loaded)."""
        if name in self._pending:
            self._resolve(name)
        return self._types.get(name)

    def get(self, name: str) -> TypeInfo:
        """Like :meth:`lookup`, raising QEMU's ``invalid object type: NAME`` when unknown."""
        info = self.lookup(name)
        if info is None:
            raise ObjectError(f"invalid object type: {name}")
        return info

    def ancestry(self, name: str) -> Iterator[TypeInfo]:
        """The type and its parents, nearest first."""
        info = self.lookup(name)
        while info is not None:
            yield info
            info = self.lookup(info.parent) if info.parent is not None else None

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

    def is_creatable(self, name: str) -> bool:
        """Whether ``-object`` may create *name* (it is in :meth:`creatable_types`), loading
        that type only."""
        info = self.lookup(name)
        return info is not None and not info.abstract and self.is_user_creatable(name)

    def creatable_types(self) -> list[str]:
        """Names ``-object`` may create: user-creatable and not abstract, sorted (this is the
        ``ObjectType`` enum of QEMU's QAPI schema)."""
        return sorted(i.name for i in self if not i.abstract and self.is_user_creatable(i.name))

    def list_types(
        self, implements: str | None = None, abstract: bool = False
    ) -> list[dict[str, Any]]:
        """QMP ``qom-list-types``: ``[{"name", "abstract"?, "parent"?}]``.

        :param implements: only types that are or derive from / implement this one.
        :param abstract: include abstract types (excluded by default, as in QEMU).
        """
        out: list[dict[str, Any]] = []
        for info in self:
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
        """Register classes in an order that puts parents first.

        Classes whose parent is registered come first; one whose parent (or own name) is
        only known by name waits until nothing else can go, so that what loading that type
        needs (its own parents among *classes*) is registered by then.
        """
        pending = list(classes)
        while pending:
            if self._register_ready(pending, lazy=False) or self._register_ready(
                pending, lazy=True
            ):
                continue
            self.register(pending[0])  # raises the precise error

    def _register_ready(self, pending: list[type[Object]], *, lazy: bool) -> bool:
        """Register the classes of *pending* that can go now (with *lazy*: the first one
        whose parent is known by name only); whether any went."""
        progress = False
        for cls in list(pending):
            info = vars(cls).get("__qom_info__")
            if not isinstance(info, TypeInfo):
                continue
            if lazy:
                ready = info.parent is None or info.parent in self
            else:
                ready = (info.parent is None or info.parent in self._types) and (
                    info.name not in self._pending
                )
            if ready:
                self.register(cls)
                pending.remove(cls)
                progress = True
                if lazy:
                    break
        return progress
