# SPDX-License-Identifier: MIT
"""The test tree mirrors ``src/qompr`` and every test directory is an importable package."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SRC = ROOT / "src" / "qompr"
#: Test directories that test no single package of src/qompr.
NOT_MIRRORED = {"_support", "corpus", "interop", "plugins", "vm"}


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
