# SPDX-License-Identifier: MIT
"""Fixtures of the VM test bed suite (tests/vm, marker ``vm``).

``vm_host`` makes sure the bed can boot: it runs ``scripts/vm-setup`` (idempotent: it installs
the Debian packages only when missing) and then checks the host.  Anything missing FAILS the
tests, loudly: a bed that silently skips would hide that the real-device tests never ran.
"""

from __future__ import annotations

import subprocess

import pytest

from .vmbed import VM_SETUP
from .vmbed import check_host


@pytest.fixture(scope="session")
def vm_host() -> None:
    """The host can boot the bed (after ``scripts/vm-setup``), else the test fails."""
    proc = subprocess.run(
        [str(VM_SETUP)], capture_output=True, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/vm-setup failed (exit {proc.returncode}); the VM test bed cannot run:\n"
            f"{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    problems = check_host()
    if problems:
        pytest.fail(
            "the VM test bed cannot boot on this host:\n  " + "\n  ".join(problems),
            pytrace=False,
        )
