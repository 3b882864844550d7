# SPDX-License-Identifier: MIT
from __future__ import annotations

import pytest

from qompr.errors import ObjectError
from qompr.errors import PluginError
from qompr.qom import USER_CREATABLE
from qompr.qom import IntProperty
from qompr.qom import Object
from qompr.qom import ObjectTree
from qompr.qom import StringProperty
from qompr.qom import TypeRegistry

calls: list[str] = []


class Base(Object, qom_type="test-base", abstract=True, interfaces=(USER_CREATABLE,)):
    name = StringProperty(description="a name")

    @classmethod
    def class_init(cls) -> None:
        calls.append(f"class_init {cls.__qom_info__.name}")

    def instance_init(self) -> None:
        calls.append("base init")

    def instance_finalize(self) -> None:
        calls.append("base fini")


class Child(Base, qom_type="test-child"):
    count = IntProperty(default=7)

    @classmethod
    def class_init(cls) -> None:
        calls.append(f"class_init {cls.__qom_info__.name}")

    def instance_init(self) -> None:
        calls.append("child init")

    def instance_finalize(self) -> None:
        calls.append("child fini")


class Plain(Object, qom_type="test-plain"):
    pass


@pytest.fixture
def reg() -> TypeRegistry:
    calls.clear()
    r = TypeRegistry()
    r.register_all([Child, Base, Plain])
    return r


def test_typeinfo_read_off_the_class() -> None:
    assert Base.__qom_info__.parent == "object"
    assert Base.__qom_info__.abstract
    assert Child.__qom_info__.parent == "test-base"
    assert not Child.__qom_info__.abstract
    assert Child.__qom_info__.interfaces == ()


def test_register_all_orders_parents_first_and_runs_class_init(reg: TypeRegistry) -> None:
    # Each type's own class_init runs once; a parent's is not re-run for children (QOM).
    assert calls == ["class_init test-base", "class_init test-child"]
    assert "test-child" in reg


def test_class_init_of_parent_not_rerun_for_child_without_one() -> None:
    class Quiet(Base, qom_type="test-quiet"):
        pass

    calls.clear()
    r = TypeRegistry()
    r.register_all([Base, Quiet])
    assert calls == ["class_init test-base"]


def test_register_child_without_parent_fails() -> None:
    with pytest.raises(PluginError, match="parent type 'test-base' is not registered"):
        TypeRegistry().register(Child)


def test_register_conflicting_name_fails(reg: TypeRegistry) -> None:
    class Impostor(Object, qom_type="test-plain"):
        pass

    with pytest.raises(PluginError, match="already registered"):
        reg.register(Impostor)
    assert reg.register(Plain).cls is Plain  # same class twice is harmless


def test_register_unknown_interface_fails() -> None:
    class Odd(Object, qom_type="test-odd", interfaces=("no-such-iface",)):
        pass

    with pytest.raises(PluginError, match="not a registered interface"):
        TypeRegistry().register(Odd)


def test_class_without_qom_type_is_refused() -> None:
    class Helper(Plain):
        pass

    with pytest.raises(PluginError, match="does not declare a QOM type"):
        TypeRegistry().register(Helper)


def test_is_a_follows_parents_and_interfaces(reg: TypeRegistry) -> None:
    assert reg.type_is_a("test-child", "test-child")
    assert reg.type_is_a("test-child", "test-base")
    assert reg.type_is_a("test-child", "object")
    assert reg.type_is_a("test-child", USER_CREATABLE)  # inherited interface
    assert reg.type_is_a("test-child", "interface")  # the interface's parent
    assert not reg.type_is_a("test-plain", USER_CREATABLE)
    assert not reg.type_is_a("test-base", "test-child")


def test_lookup_and_get(reg: TypeRegistry) -> None:
    assert reg.lookup("nope") is None
    with pytest.raises(ObjectError, match="^invalid object type: nope$"):
        reg.get("nope")


def test_qom_list_types_filters(reg: TypeRegistry) -> None:
    names = [t["name"] for t in reg.list_types()]
    assert "test-child" in names and "test-base" not in names and "interface" not in names
    with_abstract = reg.list_types(abstract=True)
    assert {"name": "test-base", "abstract": True, "parent": "object"} in with_abstract
    assert {"name": "interface", "abstract": True} in with_abstract
    implements = [t["name"] for t in reg.list_types(implements="test-base", abstract=True)]
    assert sorted(implements) == ["test-base", "test-child"]
    creatable = [t["name"] for t in reg.list_types(implements=USER_CREATABLE)]
    assert creatable == ["test-child"]
    assert reg.creatable_types() == ["test-child"]


def test_instance_init_parent_first_finalize_child_first(reg: TypeRegistry) -> None:
    tree = ObjectTree(reg)
    calls.clear()
    obj = tree.new_object("test-child")
    assert calls == ["base init", "child init"]
    tree.objects.add_child("c", obj)
    calls.clear()
    tree.objects.remove_child("c")
    assert calls == ["child fini", "base fini"]


def test_object_new_of_abstract_type_fails(reg: TypeRegistry) -> None:
    with pytest.raises(ObjectError, match="object type 'test-base' is abstract"):
        ObjectTree(reg).new_object("test-base")


def test_class_properties_are_inherited_in_order(reg: TypeRegistry) -> None:
    obj = ObjectTree(reg).new_object("test-child")
    assert isinstance(obj, Child)
    assert [p.name for p in obj.properties()] == ["type", "name", "count"]
    assert obj.count == 7
    obj.count = 9
    assert obj.get_property("count") == 9
    assert obj.get_property("type") == "test-child"
