# SPDX-License-Identifier: MIT
"""Every example in examples/ runs, and says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_object_strings_defaults() -> None:
    proc = run("object_strings.py")
    assert proc.returncode == 0, proc.stderr
    assert "/objects/helper0: pr-manager-helper" in proc.stdout
    assert "key=value: pr-manager-helper,id=helper1,path=/run/vm,,1.sock" in proc.stdout
    assert (
        "example: -object pr-manager-helper,path=/run/missing-id.sock: Parameter 'id' is missing"
        in proc.stdout
    )


def test_object_strings_arguments_and_failure_status() -> None:
    proc = run("object_strings.py", "pr-manager-helper,id=x,path=/a,,b")
    assert proc.returncode == 0
    assert "path (string) = '/a,b'" in proc.stdout
    assert run("object_strings.py", "nope,id=x").returncode == 1
