# SPDX-License-Identifier: MIT
from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr.qom import ObjectTree


@pytest.fixture
def tree() -> ObjectTree:
    """A tree with qompr's built-in types and no third-party plugins."""
    return qompr.new_tree(load_entrypoints=False)


@functools.cache
def load_corpus_generate() -> Any:
    """``tests/corpus/generate.py`` as a module: the fake helper sockets, placeholders and
    QMP client that the corpus, interop and embedding tests share."""
    path = Path(__file__).resolve().parent / "corpus" / "generate.py"
    spec = importlib.util.spec_from_file_location("corpus_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generate() -> Any:
    """The corpus generator module (see :func:`load_corpus_generate`)."""
    return load_corpus_generate()


def inspect_objects(tree: ObjectTree) -> list[dict[str, Any]]:
    """The user-created objects as the corpus generator records them through QMP
    (``qom-list`` then ``qom-get`` of each property, sorted by id and by name)."""
    objects = []
    for obj in sorted(tree.user_objects(), key=lambda o: str(o.id)):
        path = obj.canonical_path
        props = [
            {"name": p["name"], "type": p["type"], "value": tree.qom_get(path, p["name"])}
            for p in sorted(tree.qom_list(path), key=lambda p: str(p["name"]))
        ]
        objects.append({"id": obj.id, "type": obj.typename, "properties": props})
    return objects


@pytest.fixture(scope="session")
def inspect() -> Any:
    """:func:`inspect_objects`, for test modules (which cannot import conftest)."""
    return inspect_objects
