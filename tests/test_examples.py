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


def test_manager_plugin() -> None:
    proc = run("manager_plugin.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "REGISTER: GOOD",
        "REGISTER while read-only: CHECK_CONDITION DATA PROTECT, ASC/ASCQ 27h/00h"
        " (WRITE PROTECTED)",
        "READ KEYS: GOOD 0000000000001234",
    ]


def test_embed_vm_manager() -> None:
    proc = run("embed_vm_manager.py")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].startswith('QEMU arguments: -object {"qom-type":"pr-manager-helper",')
    assert lines[2] == 'query-pr-managers: [{"connected": true, "id": "pr-helper0"}]'
    assert "supervisor restarted it as" in lines[3]
    assert lines[4] == (
        'after the restart, query-pr-managers: [{"connected": true, "id": "pr-helper0"},'
        ' {"connected": true, "id": "pr-helper1"}]'
    )
