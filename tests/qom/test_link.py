# SPDX-License-Identifier: MIT
"""``LinkProperty`` given a class: the attribute is typed, and the target must be one."""

from __future__ import annotations

import pytest

from qompr.errors import ObjectError
from qompr.qom import USER_CREATABLE
from qompr.qom import LinkProperty
from qompr.qom import Object
from qompr.qom import ObjectTree
from qompr.qom import StringProperty
from qompr.qom import TypeRegistry


class Disk(Object, qom_type="disk", interfaces=(USER_CREATABLE,)):
    serial = StringProperty(default="")


class FastDisk(Disk, qom_type="fast-disk"):
    pass


class DiskLike(Object, qom_type="disk-like", interfaces=(USER_CREATABLE, "disk")):
    """Implements "disk" by name only (an interface-style declaration), not by class."""


class Shelf(Object, qom_type="shelf", interfaces=(USER_CREATABLE,)):
    disk = LinkProperty(Disk, description="the disk on the shelf")
    anything = LinkProperty("disk")


@pytest.fixture
def tree() -> ObjectTree:
    types = TypeRegistry()
    types.register_all([Disk, FastDisk, DiskLike, Shelf])
    return ObjectTree(types)


def serial_of(shelf: Shelf) -> str | None:
    # Type-checked by mypy --strict: the link reads as Disk | None, so .serial is known.
    disk = shelf.disk
    return disk.serial if disk is not None else None


def test_a_class_link_is_typed_and_named_after_the_class(tree: ObjectTree) -> None:
    fast = tree.object_add("fast-disk", "d0", serial="S0")
    shelf = tree.object_add("shelf", "s0", disk="d0")
    assert isinstance(shelf, Shelf)
    assert shelf.disk is fast
    assert serial_of(shelf) == "S0"
    assert Shelf.disk.type_name == "link<disk>" == Shelf.anything.type_name
    assert Shelf.disk.target_class is Disk and Shelf.anything.target_class is None
    assert {"name": "disk", "type": "link<disk>", "description": "the disk on the shelf"} in (
        tree.qom_list("/objects/s0")
    )


def test_a_class_link_refuses_what_is_a_type_only_by_name(tree: ObjectTree) -> None:
    tree.object_add("disk-like", "l0")
    # The name form accepts it (QOM's is_a) ...
    tree.object_add("shelf", "s0", anything="l0")
    # ... the class form cannot hand it out as a Disk.
    with pytest.raises(ObjectError, match="^Invalid parameter type for 'disk', expected: disk$"):
        tree.object_add("shelf", "s1", disk="l0")
    shelf = tree.find_object("s0")
    assert isinstance(shelf, Shelf)
    with pytest.raises(ObjectError, match="expected: disk$"):
        tree.qom_set("/objects/s0", "disk", "/objects/l0")
    assert shelf.disk is None
