# SPDX-License-Identifier: MIT
"""The layer picture in ``qompr/__init__.py`` and the import-linter contract agree, and name
every package and top-level module (``lint-imports`` in scripts/run-tests checks the code)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import qompr

ROOT = Path(__file__).resolve().parent.parent
CONFIG: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONTRACTS: list[dict[str, Any]] = CONFIG["tool"]["importlinter"]["contracts"]
(LAYERS,) = [c for c in CONTRACTS if c["type"] == "layers"]


def _contract_layers() -> list[list[str]]:
    return [[f"qompr.{m.strip()}" for m in layer.split("|")] for layer in LAYERS["layers"]]


def _docstring_layers() -> list[list[str]]:
    assert qompr.__doc__ is not None
    picture = qompr.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in picture.splitlines():
        names = re.match(r"    (qompr\.[\w.]+(?: \| qompr\.[\w.]+)*)", line)
        if names:
            rows.append(names.group(1).split(" | "))
    return rows


def test_the_docstring_draws_the_enforced_layers() -> None:
    assert _docstring_layers() == _contract_layers()


def test_every_package_and_module_has_a_layer() -> None:
    source = ROOT / "src" / "qompr"
    present = {
        f"qompr.{path.stem if path.is_file() else path.name}"
        for path in source.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    placed = {name for layer in _contract_layers() for name in layer}
    assert placed == present


def test_the_contracts_cover_the_root_package() -> None:
    assert CONFIG["tool"]["importlinter"]["root_package"] == "qompr"
    assert LAYERS["containers"] == ["qompr"]
    # Each ignored import is a documented exception, not a way around the picture.
    assert LAYERS.get("ignore_imports", []) == ["qompr.hookspecs -> qompr.managers"]
