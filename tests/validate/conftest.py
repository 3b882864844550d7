# SPDX-License-Identifier: MIT
"""Fixtures of the validate tests: a tree with the faulty test managers, an LU image, and
nodes on ``pr-manager-emulated`` (LIO mode) with named initiators."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

import qompr
from qompr.managers import PRManager
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.validate import ManagerNode
from qompr.validate import manager_node

from . import faulty

MakeNodes = Callable[..., list[ManagerNode]]


@pytest.fixture
def pm() -> pluggy.PluginManager:
    manager = qompr.get_plugin_manager(load_entrypoints=False)
    manager.register(faulty)
    return manager


@pytest.fixture
def vtree(pm: pluggy.PluginManager) -> Iterator[ObjectTree]:
    tree = qompr.new_tree(pm)
    yield tree
    for obj in reversed(tree.user_objects()):
        obj.unparent()


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(1 << 20))
    return str(path)


@pytest.fixture
def make_nodes(vtree: ObjectTree, image: str) -> Iterator[MakeNodes]:
    """``make_nodes("a", "b", wrapper="pr-manager-test-...", **emulated_props)``: nodes with
    those initiator names on one emulated LU, through the wrapper type if given."""
    made: list[ManagerNode] = []

    def make(*names: str, wrapper: str | None = None, **props: Any) -> list[ManagerNode]:
        emulated = vtree.find_object("e")
        if emulated is None:
            emulated = vtree.object_add("pr-manager-emulated", "e", **props)
        manager = emulated
        if wrapper is not None:
            manager = vtree.object_add(wrapper, "w", target="e")
        assert isinstance(manager, PRManager)
        nodes = [manager_node(name, manager, image, nexus=Nexus(name)) for name in names]
        made.extend(nodes)
        return nodes

    yield make
    for node in made:
        node.close()


def emulated(tree: ObjectTree) -> Any:
    """The test tree's ``pr-manager-emulated`` (``e``)."""
    return tree.find_object("e")
