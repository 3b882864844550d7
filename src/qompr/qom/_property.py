# SPDX-License-Identifier: MIT
"""Typed QOM properties: string, bool, int, size, enum and ``link<TYPE>``.

A property is declared in a class body, like a QEMU ``class_init`` adding class properties::

    class PRManagerHelper(PRManager, qom_type="pr-manager-helper"):
        path = props.string(mandatory=True, description="socket of the qemu-pr-helper")

The attribute reads the value; assignment goes through the setter and its checks.  The
conversions from ``-object`` strings and JSON follow QEMU's visitors (see :mod:`._convert`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import Generic
from typing import Self
from typing import TypeVar
from typing import overload

from qompr._compat import override
from qompr.errors import ObjectError
from qompr.errors import OptionError
from qompr.qom._convert import UINT64_MAX
from qompr.qom._convert import Flavour
from qompr.qom._convert import argument_text
from qompr.qom._convert import parse_bool
from qompr.qom._convert import parse_int
from qompr.qom._convert import parse_size

if TYPE_CHECKING:
    from qompr.qom._object import Object

__all__ = [
    "BoolProperty",
    "EnumProperty",
    "IntProperty",
    "LinkProperty",
    "Property",
    "SizeProperty",
    "StringProperty",
]

T = TypeVar("T")
ObjectT = TypeVar("ObjectT", bound="Object")
JSONValue = Any


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING = _Missing.MISSING


class Property(Generic[T]):
    """One typed property; a descriptor on an :class:`~qompr.qom.Object` class.

    :param name: the QOM name; defaults to the attribute name with ``_`` turned into ``-``.
    :param description: shown by ``TYPE,help`` and ``qom-list-properties``.
    :param default: the value an object has until one is set (reported as ``default-value``).
    :param mandatory: creation without it fails with ``Parameter 'NAME' is missing`` (QAPI).
    :param readonly: no setter: not settable at creation, by ``qom-set``, nor listed by help.
    :param getter: compute the value instead of reading the stored one.
    :param setter: called with the converted value instead of storing it.
    """

    #: QOM type string reported by qom-list (``string``, ``bool``, ``link<pr-manager>``...).
    type_name: str = ""
    #: JSON type a JSON ``-object`` must use (QEMU's "expected:" word).
    json_type: str = ""

    def __init__(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        default: T | _Missing = MISSING,
        mandatory: bool = False,
        readonly: bool = False,
        getter: Callable[[Object], T] | None = None,
        setter: Callable[[Object, T], None] | None = None,
    ) -> None:
        self.name = name or ""
        self.description = description
        self.default = default
        self.mandatory = mandatory
        self.readonly = readonly
        self._getter = getter
        self._setter = setter

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr
        if not self.name:
            self.name = attr.replace("_", "-")

    # -- descriptor protocol -------------------------------------------------------------
    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: Object, owner: type) -> T: ...
    def __get__(self, obj: Object | None, owner: type) -> Self | T:
        if obj is None:
            return self
        return self.get(obj)

    def __set__(self, obj: Object, value: T) -> None:
        self.set(obj, value)

    # -- object access ---------------------------------------------------------------------
    @property
    def settable(self) -> bool:
        return not self.readonly

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    def get(self, obj: Object) -> T:
        if self._getter is not None:
            return self._getter(obj)
        values = obj.__dict__.setdefault("_qom_values", {})
        if self.name in values:
            return values[self.name]  # type: ignore[no-any-return]
        if self.default is MISSING:
            return self.empty()
        return self.default

    def set(self, obj: Object, value: T) -> None:
        """Set a converted value (the checks of the concrete type run first)."""
        if self.readonly:
            raise ObjectError(f"Property '{obj.typename}.{self.name}' is not writable")
        value = self.check(obj, value)
        if self._setter is not None:
            self._setter(obj, value)
        else:
            obj.__dict__.setdefault("_qom_values", {})[self.name] = value

    def is_set(self, obj: Object) -> bool:
        return self.name in obj.__dict__.get("_qom_values", {})

    def empty(self) -> T:
        """What a getter returns when nothing was ever set (QEMU: a zeroed field)."""
        raise NotImplementedError

    def check(self, obj: Object, value: T) -> T:
        """Validate a value assigned from Python; return it, normalised."""
        return value

    # -- conversions ------------------------------------------------------------------------
    def from_string(self, text: str, flavour: Flavour, *, key: str | None = None) -> T:
        """Convert a ``key=value`` string as QEMU's opts / keyval visitor would."""
        raise NotImplementedError

    def from_json(self, value: JSONValue, *, key: str | None = None) -> T:
        """Check a JSON value's type as QEMU's qobject input visitor would."""
        raise NotImplementedError

    def to_json(self, value: T) -> JSONValue:
        """The value as QMP ``qom-get`` returns it."""
        return value

    def to_string(self, value: T) -> str:
        """The value as a ``key=value`` string that QEMU converts back to *value*."""
        return str(value)

    def _type_error(self, key: str | None) -> OptionError:
        return OptionError(
            f"Invalid parameter type for '{key or self.name}', expected: {self.json_type}"
        )

    def describe(self) -> dict[str, JSONValue]:
        """ObjectPropertyInfo, as ``qom-list-properties`` returns it."""
        info: dict[str, JSONValue] = {"name": self.name, "type": self.type_name}
        if self.description is not None:
            info["description"] = self.description
        if self.default is not MISSING and self.default is not None:
            info["default-value"] = self.to_json(self.default)
        return info


class StringProperty(Property[str]):
    """A ``string`` property (``object_property_add_str``)."""

    type_name = "string"
    json_type = "string"

    @override
    def empty(self) -> str:
        return ""

    @override
    def check(self, obj: Object, value: str) -> str:
        if not isinstance(value, str):
            raise ObjectError(f"Invalid parameter type for '{self.name}', expected: string")
        # The value a QEMU program would hold: a file name, a socket path or a name written
        # to a state file must have bytes (no NUL, no lone surrogate).
        return argument_text(value)

    @override
    def from_string(self, text: str, flavour: Flavour, *, key: str | None = None) -> str:
        return text

    @override
    def from_json(self, value: JSONValue, *, key: str | None = None) -> str:
        if not isinstance(value, str):
            raise self._type_error(key)
        return value


class BoolProperty(Property[bool]):
    """A ``bool`` property; strings ``on/yes/true/y`` and ``off/no/false/n`` (QEMU)."""

    type_name = "bool"
    json_type = "boolean"

    @override
    def empty(self) -> bool:
        return False

    @override
    def to_string(self, value: bool) -> str:
        return "on" if value else "off"

    @override
    def from_string(self, text: str, flavour: Flavour, *, key: str | None = None) -> bool:
        value = parse_bool(text)
        if value is None:
            raise OptionError(f"Parameter '{key or self.name}' expects 'on' or 'off'")
        return value

    @override
    def from_json(self, value: JSONValue, *, key: str | None = None) -> bool:
        if not isinstance(value, bool):
            raise self._type_error(key)
        return value


class IntProperty(Property[int]):
    """An ``int`` property: int64, base-0 strings (``0x`` hex, ``0`` octal) as QEMU reads them.

    :param minimum: smallest accepted value (checked after conversion).
    :param maximum: largest accepted value.
    """

    type_name = "int"
    json_type = "integer"

    def __init__(self, *, minimum: int = -(2**63), maximum: int = 2**63 - 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    @override
    def empty(self) -> int:
        return 0

    @override
    def check(self, obj: Object, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ObjectError(f"Invalid parameter type for '{self.name}', expected: integer")
        if not self.minimum <= value <= self.maximum:
            raise ObjectError(
                f"Parameter '{self.name}' expects a value in range [{self.minimum}, {self.maximum}]"
            )
        return value

    @override
    def from_string(self, text: str, flavour: Flavour, *, key: str | None = None) -> int:
        value = parse_int(text)
        if value is None:
            expects = "an int64 value" if flavour is Flavour.QEMU_SYSTEM else "integer"
            raise OptionError(f"Parameter '{key or self.name}' expects {expects}")
        return value

    @override
    def from_json(self, value: JSONValue, *, key: str | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._type_error(key)
        if not -(2**63) <= value <= 2**63 - 1:
            raise self._type_error(key)
        return value


class SizeProperty(Property[int]):
    """A ``size`` property: bytes, with QEMU's B/K/M/G/T/P/E suffixes and fractions."""

    type_name = "size"
    json_type = "uint64"

    @override
    def empty(self) -> int:
        return 0

    @override
    def check(self, obj: Object, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
            raise ObjectError(f"Parameter '{self.name}' expects uint64")
        return value

    @override
    def from_string(self, text: str, flavour: Flavour, *, key: str | None = None) -> int:
        value = parse_size(text)
        if value is None:
            expects = "a size value" if flavour is Flavour.QEMU_SYSTEM else "size"
            raise OptionError(f"Parameter '{key or self.name}' expects {expects}")
        return value

    @override
    def from_json(self, value: JSONValue, *, key: str | None = None) -> int:
        # QEMU 7.2's qobject visitor words this one differently from the other types.
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
            raise OptionError(f"Parameter '{key or self.name}' expects uint64")
        return value


class EnumProperty(Property[str]):
    """An enum property: one of a fixed list of strings; its type string is the enum's name.

    :param enum_name: the QAPI enum type name reported by ``qom-list``.
    :param values: the accepted strings, in lookup order.
    """

    json_type = "string"

    def __init__(self, enum_name: str, values: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.type_name = enum_name
        self.values = tuple(values)

    @override
    def empty(self) -> str:
        return self.values[0]

    @override
    def check(self, obj: Object, value: str) -> str:
        if value not in self.values:
            raise ObjectError(f"Parameter '{self.name}' does not accept value '{value}'")
        return value

    @override
    def from_string(self, text: str, flavour: Flavour, *, key: str | None = None) -> str:
        if text not in self.values:
            raise OptionError(f"Parameter '{key or self.name}' does not accept value '{text}'")
        return text

    @override
    def from_json(self, value: JSONValue, *, key: str | None = None) -> str:
        if not isinstance(value, str):
            raise self._type_error(key)
        return self.from_string(value, Flavour.JSON, key=key)


class LinkProperty(Property["ObjectT | None"]):
    """A ``link<TYPE>`` property: a reference to another object, set by path or id.

    Give the target as a class to have the attribute typed (``LinkProperty(PRManager)``
    reads as ``PRManager | None``), or as a QOM type name (``LinkProperty("pr-manager")``
    reads as ``Object | None``).  With a class, the target must also be an instance of it:
    true of every QOM subtype; an interface implemented by name only needs the name form.

    The target counts as *in use* while linked (see :meth:`Object.can_be_deleted`).

    :param target: the QOM type the target must be (``is_a``), or the class implementing it.
    """

    json_type = "string"

    @overload
    def __init__(self: LinkProperty[Object], target: str, **kwargs: Any) -> None: ...
    @overload
    def __init__(self, target: type[ObjectT], **kwargs: Any) -> None: ...
    def __init__(self, target: str | type[ObjectT], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(target, str):
            self.target_class: type[Object] | None = None
            self.target_type = target
        else:
            self.target_class = target
            self.target_type = target.__qom_info__.name
        self.type_name = f"link<{self.target_type}>"

    @override
    def empty(self) -> ObjectT | None:
        return None

    @override
    def check(self, obj: Object, value: ObjectT | None) -> ObjectT | None:
        if value is not None and not (
            value.is_a(self.target_type)
            and (self.target_class is None or isinstance(value, self.target_class))
        ):
            raise ObjectError(
                f"Invalid parameter type for '{self.name}', expected: {self.target_type}"
            )
        old = self.get(obj)
        if old is not None:
            old._users.discard(id(obj))
        if value is not None:
            value._users.add(id(obj))
        return value

    @override
    def from_string(self, text: str, flavour: Flavour, *, key: str | None = None) -> ObjectT | None:
        # A path becomes an object only against a tree: ObjectTree.resolve_link does it, and
        # the -object visit keeps link values as path strings until then.
        raise TypeError("link values are resolved by ObjectTree.resolve_link(), not converted")

    @override
    def to_json(self, value: ObjectT | None) -> JSONValue:
        return value.canonical_path if value is not None else ""

    @override
    def to_string(self, value: ObjectT | None) -> str:
        return value.canonical_path if value is not None else ""
