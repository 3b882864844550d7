# SPDX-License-Identifier: MIT
"""``qompr doctor``: the multipath checks through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qompr.cli.main import main


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, str]]]:
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_reservation_key_found_in_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "multipath.conf"
    conf.write_text("defaults {\n    reservation_key 0x123abc\n}\n")
    _, checks = _doctor(capsys, "--multipath-conf", str(conf))
    assert [c["name"] for c in checks] == ["libmpathpersist", "multipathd", "reservation_key"]
    key = checks[2]
    assert key["ok"] and "0x123abc" in key["detail"]


def test_missing_reservation_key_fails_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "multipath.conf"
    conf.write_text("defaults {\n    user_friendly_names yes\n}\n")
    code, checks = _doctor(capsys, "--multipath-conf", str(conf))
    assert code == 1
    key = checks[2]
    assert not key["ok"] and "reservation_key" in (key["hint"] or "")


def test_text_output_marks_each_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--multipath-conf", str(tmp_path / "absent.conf")])
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] reservation_key: " in out and "hint: " in out
    marks = [line.split("]")[0] + "]" for line in out.splitlines() if line.startswith("[")]
    assert len(marks) == 3 and set(marks) <= {"[ok]", "[FAIL]"}
