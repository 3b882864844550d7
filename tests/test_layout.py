# SPDX-License-Identifier: MIT
"""The test tree mirrors ``src/qompr`` and every test directory is an importable package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SRC = ROOT / "src" / "qompr"
#: Test directories that test no single package of src/qompr.
NOT_MIRRORED = {"_support", "cluster", "corpus", "interop", "plugins", "vm"}


def _test_dirs() -> list[Path]:
    return sorted(
        d
        for d in TESTS.rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    )


def test_every_test_directory_is_a_package() -> None:
    """``tests.X.Y`` imports work for every directory holding Python files (pytest's rootdir
    insertion then names every module after its full path, so basenames may repeat)."""
    missing = [
        str(d.relative_to(ROOT)) for d in [TESTS, *_test_dirs()] if not (d / "__init__.py").exists()
    ]
    assert missing == []


def test_test_directories_mirror_source_packages() -> None:
    """``tests/a/b`` tests the package ``qompr.a.b``: no test directory names a package that
    does not exist (as ``tests/emulated`` did for ``qompr.managers.emulated``)."""
    stray = []
    for directory in _test_dirs():
        parts = directory.relative_to(TESTS).parts
        if parts[0] in NOT_MIRRORED:
            continue
        if not (SRC.joinpath(*parts) / "__init__.py").exists():
            stray.append("/".join(parts))
    assert stray == []


def test_support_modules_are_not_test_modules() -> None:
    """pytest collects nothing from ``tests/_support``: it holds helpers, not tests."""
    assert not list((TESTS / "_support").rglob("test_*.py"))


def _source_modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_test_only_code_in_the_package() -> None:
    """What the wheel ships (all of src/qompr) holds no test-only module: only the public
    kit may use test tools, and only its pytest plugin needs pytest."""
    test_tools = re.compile(r"^\s*(import|from)\s+(pytest|hypothesis|tests)\b", re.M)
    offenders = []
    for path in _source_modules():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(SRC.parent).as_posix()
        if test_tools.search(text) and name != "qompr/testing/conformance.py":
            offenders.append(name)
        if re.search(r"tests? only", text, re.I):
            offenders.append(name)
    assert offenders == []


def test_only_the_testing_kit_imports_the_testing_kit() -> None:
    """qompr.testing sits on top of every other layer: nothing else imports it."""
    importers = [
        path.relative_to(SRC.parent).as_posix()
        for path in _source_modules()
        if SRC / "testing" not in path.parents
        and re.search(r"^\s*(import|from)\s+qompr\.testing\b", path.read_text(), re.M)
    ]
    assert importers == []
