# SPDX-License-Identifier: MIT
"""qompr-pr-helper's command line against the real qemu-pr-helper's: the same arguments give
the same exit status and the same messages (program names aside)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

QEMU_PR_HELPER = shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"
OURS = "import sys; from qompr.daemon.main import main; sys.exit(main(sys.argv[1:]))"


def run(argv: list[str], env: dict[str, str] | None = None, *, ours: bool) -> tuple[int, str]:
    """Run a helper that is expected to exit at once; (status, stderr with names unified)."""
    full_env = {**os.environ, **(env or {})}
    if ours:
        cmd = [sys.executable, "-c", OURS, "qompr-pr-helper", *argv]
    else:
        cmd = [QEMU_PR_HELPER, *argv]
    if "LISTEN_FDS" in full_env:  # LISTEN_PID must be the helper's own pid: exec via sh
        cmd = ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *cmd]
    proc = subprocess.run(
        cmd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    err = proc.stderr.replace(QEMU_PR_HELPER, "PROG").replace("qemu-pr-helper", "PROG")
    err = err.replace("qompr-pr-helper", "PROG")
    return proc.returncode, err


def cases(tmp: Path) -> list[tuple[list[str], dict[str, str] | None]]:
    long = "/tmp/" + "a" * 120
    return [
        (["-k", "relative.sock"], None),
        (["--socket=relative.sock"], None),
        (["--bogus"], None),
        (["--bogus=1"], None),
        (["-Z"], None),
        (["-vZ"], None),
        (["-k"], None),
        (["--socket"], None),
        (["--help=x"], None),
        (["--version=2"], None),
        (["--v"], None),
        (["-u", "no-such-user-qompr"], None),
        (["--user=no-such-user-qompr"], None),
        (["-g", "no-such-group-qompr"], None),
        (["-u", "99999999999"], None),
        (["-u", "-1"], None),
        (["-u", "12abc"], None),
        (["-u", ""], None),
        (["-g", "4294967296"], None),
        (["-k", long], None),
        (["-k", "/nonexistent-qompr/x.sock"], None),
        (["-k", str(tmp / "adir")], None),
        (["-k", str(tmp / "s1.sock"), "-f", "/nonexistent-qompr/x.pid"], None),
        (["-k", str(tmp / "s2.sock"), "-f", ""], None),
        (["-k", str(tmp / "s3.sock")], {"LISTEN_FDS": "1"}),
        ([], {"LISTEN_FDS": "2"}),
    ]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    if not os.path.exists(QEMU_PR_HELPER):
        pytest.skip(f"REAL qemu-pr-helper NOT INSTALLED at {QEMU_PR_HELPER}")
    (tmp_path / "adir").mkdir()
    return tmp_path


def test_errors_match(tmp: Path) -> None:
    compared = 0
    for argv, env in cases(tmp):
        theirs = run(argv, env, ours=False)
        mine = run(argv, env, ours=True)
        assert mine == theirs, (argv, env)
        assert theirs[0] == 1, (argv, theirs)
        compared += 1
    assert compared >= 25


def test_pidfile_lock_conflict_matches(tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("qemu-pr-helper must start as root (it drops privileges with libcap-ng)")
    pidfile = tmp / "helper.pid"
    holder = subprocess.Popen(
        [QEMU_PR_HELPER, "-k", str(tmp / "holder.sock"), "-f", str(pidfile)],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text().strip() == str(holder.pid):
                break
            subprocess.run(["sleep", "0.02"], check=True)
        theirs = run(["-k", str(tmp / "a.sock"), "-f", str(pidfile)], ours=False)
        mine = run(["-k", str(tmp / "b.sock"), "-f", str(pidfile)], ours=True)
    finally:
        holder.terminate()
        holder.wait()
    assert mine == theirs == (1, "PROG: Cannot lock pid file: Resource temporarily unavailable\n")
