# SPDX-License-Identifier: MIT
"""Every hook is documented (as datasette's tests/test_docs.py does for its hooks)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from qompr import get_plugin_manager

HOOKS_MD = Path(__file__).resolve().parent.parent / "docs" / "plugins" / "hooks.md"


def _hook_names() -> list[str]:
    pm = get_plugin_manager(load_entrypoints=False)
    return sorted(name for name in dir(pm.hook) if name.startswith("qompr_"))


def test_there_are_hooks() -> None:
    assert "qompr_register_types" in _hook_names()


@pytest.mark.parametrize("hook", _hook_names())
def test_hook_has_section_with_its_signature(hook: str) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    spec = getattr(pm.hook, hook).spec
    assert spec is not None
    params = ", ".join(inspect.signature(spec.function).parameters)
    text = HOOKS_MD.read_text(encoding="utf-8")
    assert re.search(rf"^## {hook}\({re.escape(params)}\)$", text, re.MULTILINE), (
        f"docs/plugins/hooks.md lacks '## {hook}({params})'"
    )
