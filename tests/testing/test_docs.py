# SPDX-License-Identifier: MIT
"""docs/testing.md covers the kit's public names, and its examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import qompr.testing

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("name", qompr.testing.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    assert re.search(rf"`(qompr\.testing\.)?{name}\b", DOC.read_text(encoding="utf-8"))


def test_there_are_examples() -> None:
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_examples_run(index: int) -> None:
    exec(compile(SNIPPETS[index], f"{DOC}:snippet{index}", "exec"), {"__name__": "snippet"})
