# SPDX-License-Identifier: MIT
"""Real QEMU (``qemu-system-x86_64``, 7.2) as a client of qompr-pr-helper.

QEMU connects and negotiates while creating ``-object pr-manager-helper`` (creation fails
otherwise), so ``query-pr-managers`` answering ``connected: true`` proves the handshake.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qompr.testing import HelperProcess
from qompr.testing import wait_for_socket

pytestmark = pytest.mark.interop

QEMU = shutil.which("qemu-system-x86_64")


class Qmp:
    """Just enough QMP: one command at a time, events collected on the side."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.file = self.sock.makefile("rw", encoding="utf-8")
        self.events: list[dict[str, Any]] = []
        greeting = json.loads(self.file.readline())
        assert "QMP" in greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments: Any) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.file.write(json.dumps(message) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "event" in reply:
                self.events.append(reply)
                continue
            return reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _our_helper(workdir: Path) -> HelperProcess:
    argv = [sys.executable, "-m", "qompr.daemon.main", "-vv"]
    if os.geteuid() != 0:
        argv.append("--keep-privileges")
    return HelperProcess(argv, str(workdir))


@pytest.fixture
def qemu_with_helper(tmp_path: Path) -> Iterator[tuple[Qmp, HelperProcess]]:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 NOT INSTALLED (Debian package qemu-system-x86)")
    helper = _our_helper(tmp_path).start()
    qmp_path = str(tmp_path / "qmp.sock")
    proc = subprocess.Popen(
        [QEMU, "-machine", "none", "-nodefaults", "-display", "none", "-S",
         "-qmp", f"unix:{qmp_path},server=on,wait=off",
         "-object", f"pr-manager-helper,id=pr0,path={helper.path}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_socket(qmp_path, timeout=30, proc=proc)
        qmp = Qmp(qmp_path)
        yield qmp, helper
        qmp.execute("quit")
        qmp.close()
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if helper.proc is not None and helper.proc.poll() is None:
            helper.stop()


def test_qemu_connects_and_reports_connected(qemu_with_helper: tuple[Qmp, HelperProcess]) -> None:
    qmp, helper = qemu_with_helper
    assert qmp.execute("query-pr-managers") == {"return": [{"id": "pr0", "connected": True}]}
    status, err = helper.stop()
    assert status == 0
    assert "connection 1 accepted" in err  # QEMU's connection, negotiated at -object time


def test_object_add_follows_the_helpers_life(
    qemu_with_helper: tuple[Qmp, HelperProcess], tmp_path: Path
) -> None:
    qmp, helper = qemu_with_helper
    path = helper.path
    helper.stop(signal.SIGKILL)
    # QEMU 7.2 notices a dead helper only on its next command (there is no watcher): it
    # still reports the old connection.  qompr's own client does better (see the daemon tests).
    assert qmp.execute("query-pr-managers")["return"] == [{"id": "pr0", "connected": True}]
    spec = {"qom-type": "pr-manager-helper", "id": "pr1", "path": path}
    refused = qmp.execute("object-add", **spec)
    assert refused["error"]["desc"] == f"Failed to connect to '{path}': Connection refused"
    # The same socket path served again by a new qompr-pr-helper: QEMU connects to it.
    again = HelperProcess(
        [sys.executable, "-m", "qompr.daemon.main"]
        + (["--keep-privileges"] if os.geteuid() != 0 else []),
        os.path.dirname(path),
    ).start()
    try:
        added = qmp.execute("object-add", **spec)
        assert added == {"return": {}}
        managers = {m["id"]: m["connected"] for m in qmp.execute("query-pr-managers")["return"]}
        assert managers == {"pr0": True, "pr1": True}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _daemon_has_clients(again.pid):
            time.sleep(0.05)
        assert _daemon_has_clients(again.pid)
    finally:
        again.stop()


def _daemon_has_clients(pid: int) -> bool:
    """Whether the process holds a connected unix socket besides its listener."""
    sockets = [
        os.readlink(f"/proc/{pid}/fd/{fd}")
        for fd in os.listdir(f"/proc/{pid}/fd")
        if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    ]
    return len(sockets) >= 2
