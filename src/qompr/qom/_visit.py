# SPDX-License-Identifier: MIT
"""The QAPI ``ObjectOptions`` visit: raw ``-object`` members → typed property values.

QEMU checks an ``-object`` against its QAPI schema before any object exists: ``qom-type``
must name a creatable type, ``id`` must be present, every mandatory member must be there,
values must convert, and nothing may be left over.  In qompr the schema of a type *is* its
settable class properties, in declaration order.  The texts differ by front end
(:class:`~qompr.qom.Flavour`); both are QEMU 7.2's, checked by the corpus in ``tests/corpus``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import attrs

from qompr.errors import OptionError
from qompr.qom._convert import Flavour
from qompr.qom._ghash import first_leftover
from qompr.qom._ghash import qdict_order
from qompr.qom._property import LinkProperty

if TYPE_CHECKING:
    from qompr.qom._registry import TypeRegistry

__all__ = ["ObjectOptions", "visit_object_options"]


@attrs.frozen
class ObjectOptions:
    """One visited ``-object``: what ``object-add`` will create.

    :param qom_type: a creatable type name.
    :param id: the object's id (not yet checked for well-formedness: QEMU does that later).
    :param props: property values in JSON form (link targets still as path strings), in the
        type's declaration order.
    """

    qom_type: str
    id: str
    props: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """QEMU's JSON ``-object`` form: ``{"qom-type": ..., "id": ..., ...}``."""
        return {"qom-type": self.qom_type, "id": self.id, **self.props}


def _not_scalar(key: str, json_type: str, flavour: Flavour) -> OptionError:
    """A member that must be a scalar got a dict or list: with keyval input only dotted keys
    can do that, and QEMU's keyval visitor then reports the member's sub-keys."""
    if flavour is Flavour.KEYVAL:
        return OptionError(f"Parameters '{key}.*' are unexpected")
    return OptionError(f"Invalid parameter type for '{key}', expected: {json_type}")


def _expect_str(value: Any, key: str, flavour: Flavour) -> str:
    if isinstance(value, str):
        return value
    raise _not_scalar(key, "string", flavour)


def visit_object_options(
    types: TypeRegistry, qdict: Mapping[str, Any], flavour: Flavour
) -> ObjectOptions:
    """Visit *qdict* as ``ObjectOptions``.

    :param qdict: for :attr:`Flavour.JSON` the decoded JSON object; otherwise string values
        (nested dicts/lists for dotted keyval keys).  Its order matters when several keys
        are unexpected: for QEMU_SYSTEM it is QemuOpts order with ``id`` last (the opts
        visitor's insertion order), otherwise the order the keys were first given.
    :raises OptionError: with QEMU's text for the first problem QEMU would report.
    """
    remaining = dict(qdict)
    if "qom-type" not in remaining:
        raise OptionError("Parameter 'qom-type' is missing")
    qom_type = _expect_str(remaining.pop("qom-type"), "qom-type", flavour)
    if not types.is_creatable(qom_type):
        raise OptionError(f"Parameter 'qom-type' does not accept value '{qom_type}'")
    if "id" not in remaining:
        raise OptionError("Parameter 'id' is missing")
    obj_id = _expect_str(remaining.pop("id"), "id", flavour)

    cls = types.get(qom_type).cls
    props: dict[str, Any] = {}
    for prop in cls.__qom_properties__.values():
        if not prop.settable:
            continue
        if prop.name not in remaining:
            if prop.mandatory:
                raise OptionError(f"Parameter '{prop.name}' is missing")
            continue
        raw = remaining.pop(prop.name)
        if flavour is Flavour.JSON:
            if isinstance(prop, LinkProperty):
                props[prop.name] = _expect_str(raw, prop.name, flavour)
            else:
                props[prop.name] = prop.to_json(prop.from_json(raw))
        else:
            if not isinstance(raw, str):
                raise _not_scalar(prop.name, prop.json_type, flavour)
            if isinstance(prop, LinkProperty):
                props[prop.name] = raw
            else:
                props[prop.name] = prop.to_json(prop.from_string(raw, flavour))
    if remaining:
        # QEMU names the leftover its GHashTable yields first (see _ghash).
        inserted = list(qdict) if flavour is Flavour.QEMU_SYSTEM else qdict_order(qdict)
        visited = ["qom-type", "id", *props]
        extra = first_leftover(inserted, visited) or next(iter(remaining))
        if flavour is Flavour.QEMU_SYSTEM:
            raise OptionError(f"Invalid parameter '{extra}'")
        raise OptionError(f"Parameter '{extra}' is unexpected")
    return ObjectOptions(qom_type, obj_id, props)
