"""Sanity checks of the recorded QEMU ``-object`` corpus (no QEMU needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import generate

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "qemu-7.2-object.json"

CASE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "group": str,
    "args": list,
    "note": str,
    "exit_status": (int, type(None)),
    "timed_out": bool,
    "stdout": str,
    "stderr": str,
    "stayed_running": bool,
    "objects": (list, type(None)),
}
TOP_FIELDS = (
    "format",
    "qemu_version",
    "date",
    "command",
    "environment",
    "placeholders",
    "socket_aliases",
    "cases",
)


@pytest.fixture(scope="module")
def corpus() -> dict[str, Any]:
    data: Any = json.loads(CORPUS.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def cases(corpus: dict[str, Any]) -> list[dict[str, Any]]:
    result: Any = corpus["cases"]
    assert isinstance(result, list)
    return result


def test_top_level(corpus: dict[str, Any]) -> None:
    for field in TOP_FIELDS:
        assert field in corpus, field
    assert corpus["format"] == 1
    assert corpus["qemu_version"].startswith("QEMU emulator version 7.2.")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", corpus["date"])


def test_enough_cases(cases: list[dict[str, Any]]) -> None:
    assert len(cases) >= 150


def test_case_fields(cases: list[dict[str, Any]]) -> None:
    for case in cases:
        for field, kind in CASE_FIELDS.items():
            assert field in case, (case.get("name"), field)
            assert isinstance(case[field], kind), (case["name"], field)
        assert case["name"].startswith(case["group"] + "/")
        assert 1 <= len(case["args"]) <= 3, case["name"]
        assert all(isinstance(arg, str) for arg in case["args"]), case["name"]
        assert not case["timed_out"], case["name"]
        assert "qmp_error" not in case, case["name"]
        assert isinstance(case["exit_status"], int), case["name"]


def test_names_unique(cases: list[dict[str, Any]]) -> None:
    names = [case["name"] for case in cases]
    assert len(names) == len(set(names))


def test_running_cases_have_objects(cases: list[dict[str, Any]]) -> None:
    for case in cases:
        if case["stayed_running"]:
            assert case["exit_status"] == 0, case["name"]
            assert case["objects"], case["name"]
            for obj in case["objects"]:
                assert set(obj) == {"id", "type", "properties"}, case["name"]
                for prop in obj["properties"]:
                    assert "name" in prop and "type" in prop, case["name"]
                    assert ("value" in prop) != ("error" in prop), case["name"]
        else:
            assert case["objects"] is None, case["name"]


def test_both_outcomes_present(cases: list[dict[str, Any]]) -> None:
    assert any(case["stayed_running"] for case in cases)
    assert any(case["exit_status"] == 1 for case in cases)
    assert any(case["exit_status"] == 0 and case["stdout"] for case in cases)


def test_no_temporary_paths_leak(corpus: dict[str, Any]) -> None:
    text = CORPUS.read_text(encoding="utf-8")
    assert "/tmp/qompr-corpus-" not in text
    assert "qmp-0" not in text


def test_matches_generator_cases(cases: list[dict[str, Any]]) -> None:
    """The JSON is up to date with the case list in generate.py."""
    declared = generate.CASES
    expected = [(c.full_name, list(c.args)) for c in declared]
    assert [(c["name"], c["args"]) for c in cases] == expected
