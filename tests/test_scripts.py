# SPDX-License-Identifier: MIT
"""The shell scripts of scripts/ parse, and vm-setup's check mode installs nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [ROOT / "scripts" / "run-tests", ROOT / "scripts" / "vm-setup"]


@pytest.mark.parametrize("script", [*SCRIPTS, ROOT / "scripts" / "lib" / "debian.sh"], ids=str)
def test_script_parses(script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_script_is_executable(script: Path) -> None:
    assert script.stat().st_mode & 0o111


def test_vm_setup_check_mode_only_reports() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "vm-setup"), "--check"], check=False, capture_output=True, text=True
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stdout.startswith(
        "vm-setup: all VM test bed packages present"
        if proc.returncode == 0
        else "vm-setup: missing packages: "
    )
    assert "installing" not in proc.stdout
