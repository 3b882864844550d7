# SPDX-License-Identifier: MIT
"""A small QOM: types, inheritance, interfaces, typed properties and the ``/objects`` tree.

This layer knows nothing about SCSI.  Start with :class:`ObjectTree`; declare types by
subclassing :class:`Object` with ``qom_type=...``.
"""

from qompr.qom._convert import Flavour as Flavour
from qompr.qom._convert import argument_bytes as argument_bytes
from qompr.qom._convert import argument_text as argument_text
from qompr.qom._convert import parse_bool as parse_bool
from qompr.qom._convert import parse_int as parse_int
from qompr.qom._convert import parse_size as parse_size
from qompr.qom._object import USER_CREATABLE as USER_CREATABLE
from qompr.qom._object import Container as Container
from qompr.qom._object import LifeState as LifeState
from qompr.qom._object import Object as Object
from qompr.qom._object import TypeInfo as TypeInfo
from qompr.qom._property import BoolProperty as BoolProperty
from qompr.qom._property import EnumProperty as EnumProperty
from qompr.qom._property import IntProperty as IntProperty
from qompr.qom._property import LinkProperty as LinkProperty
from qompr.qom._property import Property as Property
from qompr.qom._property import SizeProperty as SizeProperty
from qompr.qom._property import StringProperty as StringProperty
from qompr.qom._registry import TypeLoader as TypeLoader
from qompr.qom._registry import TypeRegistry as TypeRegistry
from qompr.qom._tree import ID_HINT as ID_HINT
from qompr.qom._tree import ObjectTree as ObjectTree
from qompr.qom._tree import id_wellformed as id_wellformed
from qompr.qom._visit import ObjectOptions as ObjectOptions
from qompr.qom._visit import visit_object_options as visit_object_options

__all__ = [
    "ID_HINT",
    "USER_CREATABLE",
    "BoolProperty",
    "Container",
    "EnumProperty",
    "Flavour",
    "IntProperty",
    "LifeState",
    "LinkProperty",
    "Object",
    "ObjectOptions",
    "ObjectTree",
    "Property",
    "SizeProperty",
    "StringProperty",
    "TypeInfo",
    "TypeLoader",
    "TypeRegistry",
    "argument_bytes",
    "argument_text",
    "id_wellformed",
    "parse_bool",
    "parse_int",
    "parse_size",
    "visit_object_options",
]
