# SPDX-License-Identifier: MIT
"""Issue 16 defect 3: a daemon restart must not drop a running client's registrations.

``qompr-pr-helper --backend pr-manager-emulated,...,state=FILE`` is killed with SIGKILL and
started again on the same socket (what a supervisor or libvirt does) while its client, one
process, stays connected in spirit: it reconnects, keeps its pid and so its initiator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from qompr.scsi import ScsiStatus
from qompr.scsi import SenseData
from qompr.testing import HelperProcess
from qompr.testing import connected
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import request

PY = [sys.executable, "-m", "qompr.daemon.main"]
KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]
ROOT = Path(__file__).resolve().parents[3]
KEY = 0xABC


def _register(key: int) -> bytes:
    return bytes(8) + key.to_bytes(8, "big") + bytes(8)


def _reserve(key: int) -> bytes:
    return key.to_bytes(8, "big") + bytes(16)


def _keys(data: bytes) -> list[int]:
    count = int.from_bytes(data[4:8], "big") // 8
    return [int.from_bytes(data[8 + 8 * i : 16 + 8 * i], "big") for i in range(count)]


def _helper(tmp_path: Path, backend: str) -> HelperProcess:
    return HelperProcess([*PY, *KEEP, "--backend", backend], str(tmp_path))


def test_sigkill_and_restart_keeps_the_clients_registration(tmp_path: Path) -> None:
    state = tmp_path / "pr.db"
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    backend = f"pr-manager-emulated,id=emu0,state={state},lu-name=disk"
    fd = os.open(disk, os.O_RDWR)
    try:
        helper = _helper(tmp_path, backend).start()
        with connected(helper.path) as sock:
            assert request(sock, pr_out(24), fd, _register(KEY))[0] == ScsiStatus.GOOD
        helper.stop(signal.SIGKILL)
        helper.start()  # same socket, a new daemon process: not a power cycle
        try:
            with connected(helper.path) as sock:
                status, _, data = request(sock, pr_in(255), fd)
                assert status == ScsiStatus.GOOD
                assert _keys(data) == [KEY]
                reserve = pr_out(24, action=1, type_=1)
                assert request(sock, reserve, fd, _reserve(KEY))[0] == ScsiStatus.GOOD
        finally:
            helper.stop()
    finally:
        os.close(fd)


def test_power_cycle_command_tells_the_running_client(tmp_path: Path) -> None:
    state = tmp_path / "pr.db"
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    backend = f"pr-manager-emulated,id=emu0,state={state},lu-name=disk"
    fd = os.open(disk, os.O_RDWR)
    try:
        with _helper(tmp_path, backend) as helper, connected(helper.path) as sock:
            assert request(sock, pr_out(24), fd, _register(KEY))[0] == ScsiStatus.GOOD
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            done = subprocess.run(
                [sys.executable, "-m", "qompr", "emulated", "power-cycle", str(state)],
                env=env,
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (done.returncode, done.stderr) == (0, "")
            # The registration was not made with APTPL: it is gone, and the client is told.
            status, sense, _ = request(sock, pr_in(255), fd)
            assert status == ScsiStatus.CHECK_CONDITION
            code = SenseData.from_bytes(sense).code
            assert (code.key, code.asc, code.ascq) == (0x6, 0x29, 0x01)
            status, _, data = request(sock, pr_in(255), fd)
            assert status == ScsiStatus.GOOD and _keys(data) == []
    finally:
        os.close(fd)
