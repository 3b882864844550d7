# SPDX-License-Identifier: MIT
"""QOM types and objects.

Design, mirroring QEMU's ``include/qom/object.h``:

* A QOM *type* is a Python class that passes ``qom_type=NAME`` to its class statement.  Its
  QOM parent is the nearest base class that has a QOM type, so QOM inheritance and Python
  inheritance are the same thing and ``is_a`` needs no second table.  ``abstract=True`` and
  ``interfaces=("user-creatable",)`` are the TypeInfo flags of the same names.
* Declaring a class registers nothing.  A :class:`~qompr.qom.TypeRegistry` holds the types
  one program knows (built-ins and plugins register through a pluggy hook), so two registries
  in one process never see each other's plugins.
* ``class_init`` is a classmethod run once per registry registration (parents first);
  ``instance_init`` / ``instance_finalize`` are methods run for every class in the ancestry
  that defines one (parents first / children first), as QOM does.
* Properties are descriptors (:mod:`._property`); per-object ``child<...>`` properties are the
  children of the composition tree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

import attrs

from qompr._compat import override
from qompr.errors import ObjectError
from qompr.qom._property import Property

if TYPE_CHECKING:
    from qompr.qom._tree import ObjectTree

__all__ = ["Container", "LifeState", "Object", "TypeInfo", "UserCreatable"]

#: Name of the interface every ``-object`` type implements (QEMU ``TYPE_USER_CREATABLE``).
USER_CREATABLE = "user-creatable"


@attrs.frozen
class TypeInfo:
    """What QEMU's ``TypeInfo`` says about one type, read off its class.

    :param name: the QOM type name.
    :param parent: the parent type's name (``None`` only for ``object`` and ``interface``).
    :param abstract: no instances; only subtypes are created.
    :param interfaces: names of the interface types this type adds.
    :param cls: the Python class that implements it.
    """

    name: str
    parent: str | None
    abstract: bool
    interfaces: tuple[str, ...]
    cls: type[Object]


class _TypeProperty(Property[str]):
    type_name = "string"
    json_type = "string"

    @override
    def empty(self) -> str:  # pragma: no cover - the getter always answers
        return ""


class LifeState(enum.Enum):
    """An object's life cycle: ``created`` → ``completed`` → ``finalized``."""

    CREATED = "created"
    COMPLETED = "completed"
    FINALIZED = "finalized"


class Object:
    """The root of every QOM type (``TYPE_OBJECT``, name ``object``).

    Objects are created by :meth:`ObjectTree.new_object` (``object_new``), never directly.
    """

    __qom_info__: ClassVar[TypeInfo]
    __qom_properties__: ClassVar[dict[str, Property[Any]]]

    _parent: Object | None
    _name: str | None

    @override
    def __init_subclass__(
        cls,
        *,
        qom_type: str | None = None,
        abstract: bool = False,
        interfaces: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        # Class properties: the parent's, then ours in declaration order (QOM class_init).
        merged: dict[str, Property[Any]] = dict(getattr(cls, "__qom_properties__", {}))
        for value in vars(cls).values():
            if isinstance(value, Property):
                merged[value.name] = value
        cls.__qom_properties__ = merged
        if qom_type is None:
            # A plain Python subclass is an implementation detail of its QOM type.
            return
        parent_info = getattr(cls, "__qom_info__", None)
        cls.__qom_info__ = TypeInfo(
            name=qom_type,
            parent=parent_info.name if parent_info is not None else None,
            abstract=abstract,
            interfaces=tuple(interfaces),
            cls=cls,
        )

    # -- construction (object_new) -----------------------------------------------------------
    def __init__(self, tree: ObjectTree, typename: str) -> None:
        self._tree = tree
        self._typename = typename
        self._parent = None
        self._name = None
        self._children: dict[str, Object] = {}
        self._instance_properties: dict[str, Property[Any]] = {}
        self._users: set[int] = set()
        self._state = LifeState.CREATED
        for klass in reversed(type(self).__mro__):
            init = vars(klass).get("instance_init")
            if init is not None:
                init(self)

    @classmethod
    def class_init(cls) -> None:
        """Run once when the type is registered (QEMU ``class_init``); override to customise."""

    # -- user-creatable (meaningful for types implementing the interface) ----------------------
    def complete(self) -> None:
        """UserCreatable ``complete``: finish construction once all properties are set.

        Raise :class:`~qompr.errors.QomprError` to fail the creation; the object is then
        removed from the tree again.
        """

    def can_be_deleted(self) -> bool:
        """UserCreatable ``can_be_deleted``.  QEMU's default answers True; qompr also refuses
        while another object links to this one (QEMU leaves that to each type)."""
        return not self._users

    # -- identity ------------------------------------------------------------------------------
    @property
    def typename(self) -> str:
        """The QOM type name (``object_get_typename``)."""
        return self._typename

    @property
    def tree(self) -> ObjectTree:
        """The object tree (and type registry) this object was created in."""
        return self._tree

    @property
    def life_state(self) -> LifeState:
        return self._state

    @property
    def parent(self) -> Object | None:
        return self._parent

    @property
    def id(self) -> str | None:
        """The name of this object in its parent (the ``id`` for ``/objects`` children)."""
        return self._name

    @property
    def canonical_path(self) -> str:
        """``/objects/helper0`` for user-created objects; ``/`` for the root."""
        parts: list[str] = []
        obj: Object | None = self
        while obj is not None and obj._parent is not None:
            assert obj._name is not None
            parts.append(obj._name)
            obj = obj._parent
        return "/" + "/".join(reversed(parts))

    def is_a(self, typename: str) -> bool:
        """``object_dynamic_cast``: True if this object's type is *typename* or derives from it,
        or implements the interface *typename*."""
        return self._tree.types.type_is_a(self._typename, typename)

    # -- properties ----------------------------------------------------------------------------
    def properties(self) -> Iterator[Property[Any]]:
        """Every property: class properties first, then this object's own (children, ...)."""
        yield from type(self).__qom_properties__.values()
        yield from self._instance_properties.values()

    def find_property(self, name: str) -> Property[Any]:
        """``object_property_find_err``."""
        prop = type(self).__qom_properties__.get(name) or self._instance_properties.get(name)
        if prop is None:
            raise ObjectError(f"Property '{self._typename}.{name}' not found")
        return prop

    def get_property(self, name: str) -> Any:
        """The value as QMP ``qom-get`` returns it (JSON-compatible)."""
        prop = self.find_property(name)
        return prop.to_json(prop.get(self))

    def set_property(self, name: str, value: Any) -> None:
        """``qom-set`` with a JSON value (the qobject visitor's strict types)."""
        from qompr.qom._property import LinkProperty

        prop = self.find_property(name)
        if prop.readonly:
            raise ObjectError(f"Property '{self._typename}.{name}' is not writable")
        if isinstance(prop, LinkProperty):
            if not isinstance(value, str):
                raise prop._type_error(name)
            prop.set(self, self._tree.resolve_link(self, prop, value))
            return
        prop.set(self, prop.from_json(value, key=name))

    # -- composition tree ------------------------------------------------------------------------
    def children(self) -> dict[str, Object]:
        """The ``child<...>`` properties, by name, in insertion order."""
        return dict(self._children)

    def add_child(self, name: str, child: Object) -> None:
        """``object_property_add_child``: the child becomes ``<this path>/<name>``."""
        if name in self._children or name in type(self).__qom_properties__:
            raise ObjectError(
                f"attempt to add duplicate property '{name}' to object (type '{self._typename}')"
            )
        if child._parent is not None:
            raise ObjectError(f"object '{child.canonical_path}' already has a parent")
        self._children[name] = child
        self._instance_properties[name] = _ChildProperty(name, child.typename)
        child._parent = self
        child._name = name

    def remove_child(self, name: str) -> Object:
        """``object_unparent``: detach the child and finalize it."""
        child = self._children.pop(name)
        del self._instance_properties[name]
        child._parent = None
        child._name = None
        child._finalize()
        return child

    def unparent(self) -> None:
        if self._parent is not None and self._name is not None:
            self._parent.remove_child(self._name)

    def _finalize(self) -> None:
        if self._state is LifeState.FINALIZED:
            return
        for name in list(self._children):
            self.remove_child(name)
        # Drop our own links so their targets are no longer "in use" by us.
        from qompr.qom._property import LinkProperty

        for prop in self.properties():
            if isinstance(prop, LinkProperty):
                target = prop.get(self)
                if target is not None:
                    target._users.discard(id(self))
        for klass in type(self).__mro__:
            fini = vars(klass).get("instance_finalize")
            if fini is not None:
                fini(self)
        self._state = LifeState.FINALIZED

    @override
    def __repr__(self) -> str:
        where = self.canonical_path if self._parent is not None else "unparented"
        return f"<{type(self).__name__} {self._typename} at {where}>"


# Every object has a read-only "type" property of type "string" (TYPE_OBJECT's class_init).
Object.__qom_properties__ = {
    "type": _TypeProperty(name="type", readonly=True, getter=lambda obj: obj.typename)
}
Object.__qom_info__ = TypeInfo(
    name="object", parent=None, abstract=False, interfaces=(), cls=Object
)


class _ChildProperty(Property["Object"]):
    """``child<TYPE>``: read-only, its value is the child's canonical path."""

    json_type = "string"

    def __init__(self, name: str, child_type: str) -> None:
        super().__init__(name=name, readonly=True)
        self.type_name = f"child<{child_type}>"

    @override
    def get(self, obj: Object) -> Object:
        return obj._children[self.name]

    @override
    def to_json(self, value: Object) -> Any:
        return value.canonical_path


class Container(Object, qom_type="container"):
    """A plain node of the composition tree (``/``, ``/objects``)."""


class Interface(Object, qom_type="interface", abstract=True):
    """Root of the interface types (``TYPE_INTERFACE``, which has no parent in QOM)."""


Interface.__qom_info__ = attrs.evolve(Interface.__qom_info__, parent=None)


class UserCreatable(Interface, qom_type=USER_CREATABLE, abstract=True):
    """The ``user-creatable`` interface: objects that ``-object``/``object-add`` may create.

    A type implements it by listing ``"user-creatable"`` in ``interfaces=``; the methods are
    :meth:`complete` and :meth:`can_be_deleted` on :class:`~qompr.qom.Object` subclasses.
    """


def walk(obj: Object) -> Iterator[Object]:
    """The object and all its descendants, depth first (an explicit stack: the tree's depth
    is not bounded by Python's)."""
    stack = [obj]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node._children.values()))
