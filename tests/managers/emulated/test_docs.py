# SPDX-License-Identifier: MIT
"""docs/emulated.md is generated from, and kept in step with, the code."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from qompr.managers.emulated import AccessClass
from qompr.managers.emulated import Policy
from qompr.managers.emulated._access import LIO_ACCESS
from qompr.managers.emulated._access import SPC4_ACCESS
from qompr.managers.emulated._access import access_table_markdown
from qompr.qom import ObjectTree

DOC = Path(__file__).resolve().parents[3] / "docs" / "emulated.md"


@pytest.mark.parametrize("table", [SPC4_ACCESS, LIO_ACCESS], ids=["spc4", "lio"])
def test_access_tables_are_the_generated_ones(table: dict[AccessClass, str]) -> None:
    assert access_table_markdown(table) in DOC.read_text(encoding="utf-8")


def test_every_policy_switch_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for field in attrs.fields(Policy):
        if field.name != "mode":
            assert f"`{field.name}`" in text, field.name


def test_every_property_is_documented(tree: ObjectTree) -> None:
    text = DOC.read_text(encoding="utf-8")
    for prop in tree.qom_list_properties("pr-manager-emulated"):
        if prop["name"] != "type":
            assert f"`{prop['name']}`" in text, prop["name"]
