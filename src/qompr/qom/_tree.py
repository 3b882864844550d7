# SPDX-License-Identifier: MIT
"""The composition tree (``/``, ``/objects``) and the QMP commands that work on it.

Replies are shaped exactly like QMP's (lists of dicts with QMP's key names), so code written
against QEMU's ``qom-list`` / ``qom-get`` / ``qom-list-types`` reads ours unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from qompr._lazy import loaded_logger
from qompr.errors import ObjectError
from qompr.errors import QomprError
from qompr.qom._convert import Flavour
from qompr.qom._object import LifeState
from qompr.qom._object import Object
from qompr.qom._object import walk
from qompr.qom._property import LinkProperty
from qompr.qom._registry import TypeRegistry
from qompr.qom._visit import ObjectOptions
from qompr.qom._visit import visit_object_options

__all__ = ["ID_HINT", "ObjectTree", "id_wellformed"]


#: The hint QEMU appends to a malformed id (util/id.c, qom/object_interfaces.c).
ID_HINT = "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter."

_ID = re.compile(r"[A-Za-z][A-Za-z0-9._-]*\Z")


def id_wellformed(ident: str) -> bool:
    """QEMU's ``id_wellformed``: an ASCII letter, then letters, digits, ``-``, ``.``, ``_``."""
    return _ID.match(ident) is not None


def bad_id_error() -> ObjectError:
    return ObjectError("Parameter 'id' expects an identifier", hint=ID_HINT)


class ObjectTree:
    """One program's QOM world: a type registry and the tree rooted at ``/``.

    :param types: the registry; a new one with only QOM's own types if omitted.
    :param hook: a pluggy hook relay (``PluginManager.hook``) that objects may call, e.g. to
        announce ``PR_MANAGER_STATUS_CHANGED``; ``None`` when there are no plugins.
    """

    def __init__(self, types: TypeRegistry | None = None, *, hook: Any = None) -> None:
        self.types = types if types is not None else TypeRegistry()
        self.hook = hook
        self.root = self.new_object("container")
        self.objects = self.new_object("container")
        self.root.add_child("objects", self.objects)

    # -- object_new / path resolution -----------------------------------------------------
    def new_object(self, typename: str) -> Object:
        """``object_new``: instantiate a registered, non-abstract type (not yet in the tree)."""
        info = self.types.get(typename)
        if info.abstract:
            raise ObjectError(f"object type '{typename}' is abstract")
        return info.cls(self, typename)

    def resolve(self, path: str, typename: str | None = None) -> Object | None:
        """``object_resolve_path_type``: an absolute path, or a partial one that matches
        exactly one object (of *typename* if given) anywhere in the tree.

        :raises ObjectError: when a partial path is ambiguous.
        """
        if path.startswith("/"):
            obj: Object | None = self.root
            for part in path.split("/")[1:]:
                if not part:
                    continue
                assert obj is not None
                obj = obj.children().get(part)
                if obj is None:
                    return None
            if obj is not None and typename is not None and not obj.is_a(typename):
                return None
            return obj
        parts = [p for p in path.split("/") if p]
        found = [
            o
            for o in walk(self.root)
            if o.parent is not None
            and o.canonical_path.split("/")[-len(parts) :] == parts
            and (typename is None or o.is_a(typename))
        ]
        if len(found) > 1:
            raise ObjectError(f"Path '{path}' does not uniquely identify an object")
        return found[0] if found else None

    def resolve_link(self, obj: Object, prop: LinkProperty[Any], path: str) -> Object | None:
        """What QEMU's link setter does with a path string (empty string clears the link)."""
        if path == "":
            return None
        target = self.resolve(path, prop.target_type)
        if target is None:
            if self.resolve(path) is not None:
                raise ObjectError(
                    f"Invalid parameter type for '{prop.name}', expected: {prop.target_type}"
                )
            raise ObjectError(f"Device '{path}' not found")
        return target

    def _find(self, path: str) -> Object:
        try:
            obj = self.resolve(path)
        except ObjectError:
            raise ObjectError(f"Path '{path}' is ambiguous") from None
        if obj is None:
            raise ObjectError(f"Device '{path}' not found")
        return obj

    # -- QMP: introspection ------------------------------------------------------------------
    def qom_list(self, path: str) -> list[dict[str, Any]]:
        """QMP ``qom-list``: ``[{"name", "type", "description"?}]`` of the object at *path*."""
        out = []
        for prop in self._find(path).properties():
            entry: dict[str, Any] = {"name": prop.name, "type": prop.type_name}
            if prop.description is not None:
                entry["description"] = prop.description
            out.append(entry)
        return out

    def qom_get(self, path: str, property: str) -> Any:
        """QMP ``qom-get``."""
        return self._find(path).get_property(property)

    def qom_set(self, path: str, property: str, value: Any) -> None:
        """QMP ``qom-set`` with a JSON value."""
        self._find(path).set_property(property, value)

    def qom_list_properties(self, typename: str) -> list[dict[str, Any]]:
        """QMP ``qom-list-properties``: the settable and read-only properties of a type,
        ``[{"name", "type", "description"?, "default-value"?}]``."""
        info = self.types.lookup(typename)
        if info is None:
            raise ObjectError(f"Class '{typename}' not found")
        return [p.describe() for p in info.cls.__qom_properties__.values()]

    def qom_list_types(
        self, implements: str | None = None, abstract: bool = False
    ) -> list[dict[str, Any]]:
        """QMP ``qom-list-types``."""
        return self.types.list_types(implements, abstract)

    # -- user-creatable life cycle ---------------------------------------------------------
    def user_creatable_add_type(
        self, typename: str, obj_id: str, props: Mapping[str, Any], *, complete: bool = True
    ) -> Object:
        """QEMU's ``user_creatable_add_type``, step for step:

        id check, type lookup, user-creatable check, abstract check, instantiate, set each
        property (JSON values), add as ``/objects/<id>``, ``complete()`` — and on a failed
        complete the object is removed again.

        :param complete: ``False`` stops before ``complete()`` (``qompr object check``).
        """
        if not id_wellformed(obj_id):
            raise bad_id_error()
        info = self.types.get(typename)
        if not self.types.is_user_creatable(typename):
            raise ObjectError(f"object type '{typename}' isn't supported by object-add")
        if info.abstract:
            raise ObjectError(f"object type '{typename}' is abstract")
        obj = self.new_object(typename)
        try:
            for key, value in props.items():
                obj.set_property(key, value)
            self.objects.add_child(obj_id, obj)
        except QomprError:
            obj._finalize()
            raise
        if complete:
            self.complete(obj)
        log = loaded_logger("qompr.qom")  # no logging imported: nobody can show a debug line
        if log is not None:
            log.debug("created %s (%s)", obj.canonical_path, typename)
        return obj

    def object_add(
        self,
        qom_type: str,
        id: str,
        *,
        flavour: Flavour = Flavour.JSON,
        complete: bool = True,
        **props: Any,
    ) -> Object:
        """QMP ``object-add``: the QAPI visit (:func:`visit_object_options`) then
        :meth:`user_creatable_add_type`.  Property names with ``-`` may be passed with ``_``."""
        qdict = {"qom-type": qom_type, "id": id}
        qdict.update({k.replace("_", "-"): v for k, v in props.items()})
        return self.add_options(visit_object_options(self.types, qdict, flavour), complete=complete)

    def add_options(self, options: ObjectOptions, *, complete: bool = True) -> Object:
        """Create an object from already visited options (``user_creatable_add_qapi``)."""
        return self.user_creatable_add_type(
            options.qom_type, options.id, options.props, complete=complete
        )

    def complete(self, obj: Object) -> None:
        """Run ``complete()`` on an object added with ``complete=False`` (QEMU's
        ``user_creatable_complete``): a failure removes it from the tree again; success
        announces it to the plugins."""
        if obj.life_state is not LifeState.CREATED:
            return
        try:
            obj.complete()
        except QomprError:
            obj.unparent()
            raise
        obj._state = LifeState.COMPLETED
        if self.hook is not None:
            self.hook.qompr_object_created(obj=obj)

    def object_del(self, id: str) -> None:
        """QMP ``object-del``: refuses objects whose ``can_be_deleted()`` says no."""
        obj = self.objects.children().get(id)
        if obj is None:
            raise ObjectError(f"object '{id}' not found")
        if not obj.can_be_deleted():
            raise ObjectError(f"object '{id}' is in use, can not be deleted")
        obj.unparent()
        if self.hook is not None:
            self.hook.qompr_object_deleted(obj=obj, id=id)

    def user_objects(self) -> list[Object]:
        """The children of ``/objects``, in creation order."""
        return list(self.objects.children().values())

    def find_object(self, obj_id: str) -> Object | None:
        return self.objects.children().get(obj_id)
