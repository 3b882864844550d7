# SPDX-License-Identifier: MIT
"""Privilege drop: /proc/PID/status of a running qompr-pr-helper, and of qemu-pr-helper for
comparison when it is installed."""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import sys
from pathlib import Path

import pytest

from qompr.testing import HelperProcess
from qompr.testing import connected
from qompr.testing import pr_in
from qompr.testing import request

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="PRIVILEGE TESTS NEED ROOT: dropping privileges is not testable"
)

CAP_SYS_RAWIO = 1 << 17
CAP_SYS_ADMIN = 1 << 21
QEMU_PR_HELPER = shutil.which("qemu-pr-helper")


def _multipath_support() -> bool:
    """Whether the daemon's default backend turns multipath on here (and keeps
    CAP_SYS_ADMIN): /dev/mapper/control opens and libmpathpersist loads."""
    try:
        os.close(os.open("/dev/mapper/control", os.O_RDWR))
        ctypes.CDLL("libmpathpersist.so.0")
    except OSError:
        return False
    return True


#: What the daemon keeps: CAP_SYS_RAWIO, and CAP_SYS_ADMIN where multipath support is on
#: (as a qemu-pr-helper built with multipath; Debian's is built without).
KEPT = CAP_SYS_RAWIO | (CAP_SYS_ADMIN if _multipath_support() else 0)


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def expected(uid: int, gid: int) -> dict[str, str]:
    return {
        "Uid": "\t".join([str(uid)] * 4),
        "Gid": "\t".join([str(gid)] * 4),
        "Groups": "",
        "CapInh": f"{0:016x}",
        "CapPrm": f"{KEPT:016x}",
        "CapEff": f"{KEPT:016x}",
        "CapBnd": f"{0:016x}",
        "CapAmb": f"{0:016x}",
    }


def observed(helper: HelperProcess) -> dict[str, str]:
    """The credentials of a helper that is serving (so past its privilege drop: both
    helpers listen first and drop later, then negotiate)."""
    with connected(helper.path):
        pass
    status = status_of(helper.pid)
    return {key: status[key] for key in expected(0, 0)}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)  # so that 'nobody' may reach its socket
    return tmp_path


def test_nobody_keeps_only_cap_sys_rawio_and_multipaths_admin(workdir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    argv = [sys.executable, "-m", "qompr.daemon.main", "-u", "nobody", "-g", str(nobody.pw_gid)]
    with HelperProcess(argv, str(workdir)) as helper:
        assert observed(helper) == expected(nobody.pw_uid, nobody.pw_gid)
        with connected(helper.path) as sock:  # still serves after the drop
            fd = os.open("/dev/null", os.O_RDWR)
            try:
                assert request(sock, pr_in(), fd)[0] == 2
            finally:
                os.close(fd)
        _, err = helper.stop()
    # As qemu-pr-helper: 'nobody' may not remove root's socket file, and says so.
    assert f"Failed to unlink socket {helper.path}: Permission denied" in err


def test_without_user_the_ids_stay_and_capabilities_go(workdir: Path) -> None:
    with HelperProcess([sys.executable, "-m", "qompr.daemon.main"], str(workdir)) as helper:
        assert observed(helper) == expected(0, 0)


@pytest.mark.skipif(QEMU_PR_HELPER is None, reason="REAL qemu-pr-helper NOT INSTALLED")
@pytest.mark.interop
def test_same_credentials_as_qemu_pr_helper(workdir: Path) -> None:
    assert QEMU_PR_HELPER is not None
    (workdir / "a").mkdir(mode=0o755)
    (workdir / "b").mkdir(mode=0o755)
    args = ["-u", "nobody", "-g", "nogroup"]
    with (
        HelperProcess([QEMU_PR_HELPER, *args], str(workdir / "a")) as real,
        HelperProcess(
            [sys.executable, "-m", "qompr.daemon.main", *args], str(workdir / "b")
        ) as ours,
    ):
        theirs = observed(real)
        if KEPT != CAP_SYS_RAWIO:  # our multipath support keeps CAP_SYS_ADMIN; Debian's has none
            theirs["CapPrm"] = theirs["CapEff"] = f"{KEPT:016x}"
        assert observed(ours) == theirs
