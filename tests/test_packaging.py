# SPDX-License-Identifier: MIT
"""Packaging metadata: one version source, the licence, classifiers, the changelog."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path
from typing import Any

import qompr
import qompr._compat

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT: dict[str, Any] = PYPROJECT["project"]


def test_the_version_is_written_once() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "src/qompr/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:\.dev\d+|rc\d+)?", qompr.__version__)
    # What is installed was built from it.
    assert importlib.metadata.version("qompr") == qompr.__version__
    written = [
        path.relative_to(ROOT)
        for path in (ROOT / "src").rglob("*.py")
        if re.search(rf'^[^#\n]*"{re.escape(qompr.__version__)}"', path.read_text("utf-8"), re.M)
    ]
    assert written == [Path("src/qompr/__init__.py")]


def test_the_licence_is_mit_and_ships() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert "MIT" in (ROOT / "README.md").read_text(encoding="utf-8").split("## Licence")[1]


def test_classifiers_match_the_supported_pythons() -> None:
    assert PROJECT["requires-python"] == ">=3.11"
    versions = sorted(
        c.rsplit(" ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert versions == ["3.11", "3.12", "3.13"]
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # PEP 639


def test_typing_extensions_is_not_a_runtime_dependency() -> None:
    # qompr._compat stands in for it at run time (start-up cost); only the type checker uses it.
    assert not any(d.startswith("typing-extensions") for d in PROJECT["dependencies"])
    assert any(d.startswith("typing-extensions") for d in PROJECT["optional-dependencies"]["test"])

    class Base:
        def method(self) -> int:
            return 1

    class Derived(Base):
        @qompr._compat.override
        def method(self) -> int:
            return 2

    assert getattr(Derived.method, "__override__", False) is True


def test_the_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "[Unreleased]"
    kinds = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        subsections = re.findall(r"^### (.+)$", section, re.M)
        assert subsections, section.splitlines()[0]
        assert set(subsections) <= kinds, subsections
        assert len(subsections) == len(set(subsections))
