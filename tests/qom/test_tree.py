# SPDX-License-Identifier: MIT
"""The /objects tree, QMP-shaped replies and the user-creatable life cycle."""

from __future__ import annotations

from typing import Any

import pytest

from qompr.errors import ObjectError
from qompr.errors import QomprError
from qompr.qom import USER_CREATABLE
from qompr.qom import BoolProperty
from qompr.qom import EnumProperty
from qompr.qom import Flavour
from qompr.qom import IntProperty
from qompr.qom import LifeState
from qompr.qom import LinkProperty
from qompr.qom import Object
from qompr.qom import ObjectTree
from qompr.qom import SizeProperty
from qompr.qom import StringProperty
from qompr.qom import TypeRegistry


class Gadget(Object, qom_type="gadget", interfaces=(USER_CREATABLE,)):
    label = StringProperty(mandatory=True, description="what it is called")
    enabled = BoolProperty(default=True)
    count = IntProperty(minimum=0, maximum=10)
    size = SizeProperty(default=4096, description="bytes")
    mode = EnumProperty("GadgetMode", ["fast", "slow"], default="fast")
    peer = LinkProperty("gadget")
    serial = StringProperty(readonly=True, getter=lambda obj: "SN-1")

    def instance_init(self) -> None:
        self.completed = False

    def complete(self) -> None:
        if self.label == "broken":
            raise ObjectError("gadget is broken")
        self.completed = True


class Abstract(Object, qom_type="abstract-gadget", abstract=True, interfaces=(USER_CREATABLE,)):
    pass


class NotCreatable(Object, qom_type="plain-gadget"):
    pass


@pytest.fixture
def gtree() -> ObjectTree:
    reg = TypeRegistry()
    reg.register_all([Gadget, Abstract, NotCreatable])
    return ObjectTree(reg)


def test_root_and_objects_container(gtree: ObjectTree) -> None:
    assert gtree.root.canonical_path == "/"
    assert gtree.objects.canonical_path == "/objects"
    assert gtree.qom_list("/") == [
        {"name": "type", "type": "string"},
        {"name": "objects", "type": "child<container>"},
    ]
    assert gtree.qom_get("/", "objects") == "/objects"


def test_object_add_creates_completes_and_lists(gtree: ObjectTree) -> None:
    obj = gtree.object_add("gadget", "g0", label="one", count=3)
    assert obj.canonical_path == "/objects/g0"
    assert obj.life_state is LifeState.COMPLETED and obj.completed  # type: ignore[attr-defined]
    assert gtree.qom_get("/objects/g0", "label") == "one"
    assert gtree.qom_get("/objects/g0", "type") == "gadget"
    assert gtree.qom_get("/objects/g0", "size") == 4096
    assert gtree.qom_get("/objects/g0", "serial") == "SN-1"
    names = [p["name"] for p in gtree.qom_list("/objects/g0")]
    assert names == ["type", "label", "enabled", "count", "size", "mode", "peer", "serial"]
    assert {"name": "peer", "type": "link<gadget>"} in gtree.qom_list("/objects/g0")
    assert {"name": "g0", "type": "child<gadget>"} in gtree.qom_list("/objects")


def test_qom_list_properties_has_defaults_and_descriptions(gtree: ObjectTree) -> None:
    props = {p["name"]: p for p in gtree.qom_list_properties("gadget")}
    assert props["size"] == {
        "name": "size", "type": "size", "description": "bytes", "default-value": 4096
    }  # fmt: skip
    assert props["mode"]["type"] == "GadgetMode"
    assert props["mode"]["default-value"] == "fast"
    assert "default-value" not in props["label"]
    with pytest.raises(ObjectError, match="Class 'nope' not found"):
        gtree.qom_list_properties("nope")


def test_qom_set_checks_json_types_and_writability(gtree: ObjectTree) -> None:
    gtree.object_add("gadget", "g0", label="one")
    gtree.qom_set("/objects/g0", "count", 5)
    assert gtree.qom_get("/objects/g0", "count") == 5
    with pytest.raises(ObjectError, match="Invalid parameter type for 'count', expected: integer"):
        gtree.qom_set("/objects/g0", "count", "5")
    with pytest.raises(
        ObjectError, match="Invalid parameter type for 'enabled', expected: boolean"
    ):
        gtree.qom_set("/objects/g0", "enabled", 1)
    with pytest.raises(ObjectError, match=r"Property 'gadget.type' is not writable"):
        gtree.qom_set("/objects/g0", "type", "x")
    with pytest.raises(ObjectError, match=r"Property 'gadget.nope' not found"):
        gtree.qom_get("/objects/g0", "nope")
    with pytest.raises(ObjectError, match=r"Device '/objects/zz' not found"):
        gtree.qom_get("/objects/zz", "type")
    with pytest.raises(ObjectError, match="does not accept value 'medium'"):
        gtree.qom_set("/objects/g0", "mode", "medium")
    with pytest.raises(ObjectError, match=r"expects a value in range \[0, 10\]"):
        gtree.qom_set("/objects/g0", "count", 11)


def test_life_cycle_errors_in_qemu_order(gtree: ObjectTree) -> None:
    add = gtree.user_creatable_add_type
    with pytest.raises(ObjectError) as exc:
        add("nope", "1bad", {})
    assert exc.value.message == "Parameter 'id' expects an identifier"  # id first
    assert exc.value.hint == (
        "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter."
    )
    with pytest.raises(ObjectError, match="^invalid object type: nope$"):
        add("nope", "a", {})
    with pytest.raises(
        ObjectError, match="^object type 'plain-gadget' isn't supported by object-add$"
    ):
        add("plain-gadget", "a", {})
    with pytest.raises(ObjectError, match="^object type 'abstract-gadget' is abstract$"):
        add("abstract-gadget", "a", {})
    with pytest.raises(ObjectError, match=r"^Property 'gadget.color' not found$"):
        add("gadget", "a", {"label": "x", "color": "red"})
    assert gtree.user_objects() == []


def test_duplicate_id_and_failed_complete_leave_tree_clean(gtree: ObjectTree) -> None:
    gtree.object_add("gadget", "g0", label="one")
    with pytest.raises(ObjectError) as exc:
        gtree.object_add("gadget", "g0", label="two")
    assert (
        exc.value.message == "attempt to add duplicate property 'g0' to object (type 'container')"
    )
    with pytest.raises(ObjectError, match="gadget is broken"):
        gtree.object_add("gadget", "g1", label="broken")
    assert [o.id for o in gtree.user_objects()] == ["g0"]
    assert gtree.qom_get("/objects/g0", "label") == "one"


def test_object_add_runs_the_qapi_visit(gtree: ObjectTree) -> None:
    with pytest.raises(ObjectError, match="^Parameter 'label' is missing$"):
        gtree.object_add("gadget", "g0")
    with pytest.raises(
        ObjectError, match="^Parameter 'qom-type' does not accept value 'abstract-gadget'$"
    ):
        gtree.object_add("abstract-gadget", "g0")
    with pytest.raises(ObjectError, match="^Parameter 'color' is unexpected$"):
        gtree.object_add("gadget", "g0", label="x", color="red")
    # The keyval flavours convert strings the way QEMU's visitors do.
    obj = gtree.object_add(
        "gadget", "g1", flavour=Flavour.KEYVAL, label="x", size="1.5k", enabled="off", count="0x3"
    )
    assert (obj.size, obj.enabled, obj.count) == (1536, False, 3)  # type: ignore[attr-defined]


def test_links_resolve_mark_in_use_and_block_deletion(gtree: ObjectTree) -> None:
    target = gtree.object_add("gadget", "g0", label="target")
    user = gtree.object_add("gadget", "g1", label="user", peer="g0")
    assert user.peer is target  # type: ignore[attr-defined]
    assert gtree.qom_get("/objects/g1", "peer") == "/objects/g0"
    with pytest.raises(ObjectError, match="^object 'g0' is in use, can not be deleted$"):
        gtree.object_del("g0")
    gtree.qom_set("/objects/g1", "peer", "/objects/g1")  # relink to itself by absolute path
    gtree.object_del("g0")
    with pytest.raises(ObjectError, match="^object 'g0' not found$"):
        gtree.object_del("g0")
    with pytest.raises(ObjectError, match="^Device 'ghost' not found$"):
        gtree.object_add("gadget", "g2", label="x", peer="ghost")
    gtree.qom_set("/objects/g1", "peer", "")
    gtree.object_del("g1")
    assert gtree.user_objects() == []


def test_link_to_wrong_type_is_a_type_error(gtree: ObjectTree) -> None:
    with pytest.raises(ObjectError, match="Invalid parameter type for 'peer', expected: gadget"):
        gtree.object_add("gadget", "g0", label="x", peer="/objects")


def test_hooks_announce_creation_and_deletion() -> None:
    seen: list[tuple[str, Any]] = []

    class Relay:
        def qompr_object_created(self, obj: Object) -> None:
            seen.append(("created", obj.id))

        def qompr_object_deleted(self, obj: Object, id: str) -> None:
            seen.append(("deleted", id))

    reg = TypeRegistry()
    reg.register(Gadget)
    tree = ObjectTree(reg, hook=Relay())
    tree.object_add("gadget", "g0", label="x")
    with pytest.raises(QomprError):
        tree.object_add("gadget", "g1", label="broken")
    tree.object_del("g0")
    assert seen == [("created", "g0"), ("deleted", "g0")]


def test_python_assignment_uses_the_setter_checks(gtree: ObjectTree) -> None:
    obj = gtree.object_add("gadget", "g0", label="x")
    with pytest.raises(ObjectError):
        obj.count = 99  # type: ignore[attr-defined]
    with pytest.raises(ObjectError, match="is not writable"):
        obj.serial = "x"  # type: ignore[attr-defined]
