# SPDX-License-Identifier: MIT
"""Fixtures of the VM test bed suite (tests/vm, marker ``vm``).

``vm_host`` makes sure the bed can boot: it runs ``scripts/vm-setup`` (idempotent: it installs
the Debian packages only when missing) and then checks the host.  Anything missing FAILS the
tests, loudly: a bed that silently skips would hide that the real-device tests never ran.
The one way out is explicit: ``QOMPR_SKIP_VM_TESTS=<reason>`` skips them, and the end of the
run says in capitals that the real-device tests did not run.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .vmbed import VM_SETUP
from .vmbed import check_host

#: Set to a reason to skip the VM suite on purpose (a machine that cannot run QEMU).
OPT_OUT = "QOMPR_SKIP_VM_TESTS"


def _opted_out() -> str | None:
    reason = os.environ.get(OPT_OUT, "").strip()
    return reason or None


@pytest.fixture(scope="session")
def vm_host() -> None:
    """The host can boot the bed (after ``scripts/vm-setup``), else the test fails."""
    reason = _opted_out()
    if reason is not None:
        pytest.skip(f"VM TEST BED SKIPPED ON REQUEST ({OPT_OUT}={reason})")
    proc = subprocess.run(
        [str(VM_SETUP)], capture_output=True, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/vm-setup failed (exit {proc.returncode}); the VM test bed cannot run "
            f"(set {OPT_OUT}=<reason> to skip it on purpose):\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    problems = check_host()
    if problems:
        pytest.fail(
            f"the VM test bed cannot boot on this host (set {OPT_OUT}=<reason> to skip it on "
            "purpose):\n  " + "\n  ".join(problems),
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reason = _opted_out()
    if reason is not None:
        terminalreporter.write_sep(
            "!",
            f"THE REAL-DEVICE (VM) TESTS DID NOT RUN: {OPT_OUT}={reason}",
            red=True,
            bold=True,
        )
