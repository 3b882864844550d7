# SPDX-License-Identifier: MIT
"""The public surface: every package's ``__all__`` names exist, and py.typed ships."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import qompr

PACKAGES = [
    "qompr",
    "qompr.qom",
    "qompr.options",
    "qompr.scsi",
    "qompr.managers",
    "qompr.managers.emulated",
    "qompr.managers.multipath",
    "qompr.embed",
    "qompr.protocol",
    "qompr.transport",
    "qompr.daemon",
    "qompr.linux",
    "qompr.validate",
    "qompr.errors",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, name
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_py_typed_ships() -> None:
    assert (Path(qompr.__file__).parent / "py.typed").is_file()


def test_exception_tree_has_one_root() -> None:
    from qompr import errors

    for attr in errors.__all__:
        cls = getattr(errors, attr)
        assert issubclass(cls, errors.QomprError), attr
