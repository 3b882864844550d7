# SPDX-License-Identifier: MIT
"""Types registered by name (``register_lazy``) load when first looked up, and only then."""

from __future__ import annotations

import pytest

from qompr.errors import ObjectError
from qompr.errors import PluginError
from qompr.qom import USER_CREATABLE
from qompr.qom import Object
from qompr.qom import ObjectTree
from qompr.qom import TypeLoader
from qompr.qom import TypeRegistry


class LazyBase(Object, qom_type="test-lazy-base", abstract=True, interfaces=(USER_CREATABLE,)):
    pass


class LazyChild(LazyBase, qom_type="test-lazy-child"):
    pass


class Impostor(Object, qom_type="test-lazy-child", interfaces=(USER_CREATABLE,)):
    pass


class Registry:
    """A registry with the two test types registered by name, counting the loads."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.types = TypeRegistry()
        self.types.register_lazy("test-lazy-base", self._loader(LazyBase))
        self.types.register_lazy("test-lazy-child", self._loader(LazyChild))

    def _loader(self, cls: type[Object]) -> TypeLoader:
        def load() -> type[Object]:
            self.loaded.append(cls.__qom_info__.name)
            return cls

        return load


def test_a_type_registered_by_name_loads_on_first_lookup_with_its_parent() -> None:
    reg = Registry()
    assert "test-lazy-child" in reg.types  # known, not loaded
    assert reg.loaded == []
    info = reg.types.get("test-lazy-child")
    assert info.cls is LazyChild
    assert sorted(reg.loaded) == ["test-lazy-base", "test-lazy-child"]
    reg.types.get("test-lazy-child")
    assert len(reg.loaded) == 2  # once


def test_creating_one_type_loads_no_other() -> None:
    reg = Registry()
    reg.types.register_lazy("test-lazy-other", lambda: pytest.fail("loaded"))
    tree = ObjectTree(reg.types)
    obj = tree.object_add("test-lazy-child", "c")
    assert isinstance(obj, LazyChild)
    assert reg.types.is_creatable("test-lazy-child")
    assert not reg.types.is_creatable("test-lazy-base")  # abstract
    assert not reg.types.is_creatable("nope")


def test_listing_the_types_loads_them_all() -> None:
    reg = Registry()
    assert reg.types.creatable_types() == ["test-lazy-child"]
    assert sorted(reg.loaded) == ["test-lazy-base", "test-lazy-child"]
    names = [t["name"] for t in Registry().types.list_types(abstract=True)]
    assert {"test-lazy-base", "test-lazy-child"} <= set(names)


def test_a_loader_that_gives_another_type_is_a_plugin_error() -> None:
    reg = TypeRegistry()
    reg.register(LazyBase)
    reg.register_lazy("test-lazy-other", lambda: LazyChild)
    with pytest.raises(PluginError, match="'test-lazy-other'.*declares 'test-lazy-child'"):
        reg.get("test-lazy-other")


def test_a_loader_that_fails_to_import_is_a_plugin_error() -> None:
    def load() -> type[Object]:
        raise ImportError("No module named 'nowhere'")

    reg = TypeRegistry()
    reg.register_lazy("test-lazy-broken", load)
    with pytest.raises(PluginError, match="'test-lazy-broken' failed to load: No module"):
        reg.get("test-lazy-broken")


def test_another_class_under_a_pending_name_conflicts_as_registered_ones_do() -> None:
    reg = Registry()
    with pytest.raises(PluginError, match="'test-lazy-child' is already registered"):
        reg.types.register(Impostor)
    assert reg.types.get("test-lazy-child").cls is LazyChild


def test_an_unknown_name_is_still_unknown() -> None:
    reg = Registry()
    with pytest.raises(ObjectError, match="^invalid object type: nope$"):
        reg.types.get("nope")
    assert reg.loaded == []
