# SPDX-License-Identifier: MIT
"""InProcessServer: the daemon's core on a thread, serving a manager of the test's."""

from __future__ import annotations

import os
from pathlib import Path

from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import ReadKeysData
from qompr.scsi import ScsiStatus
from qompr.testing import InProcessServer
from qompr.testing import connected
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import request


def test_serving_a_manager(tree: ObjectTree, tmp_path: Path) -> None:
    manager = tree.object_add("pr-manager-emulated", "emu")
    assert isinstance(manager, PRManagerEmulated)
    lu = tmp_path / "lu.img"
    lu.write_bytes(bytes(4096))
    fd = os.open(lu, os.O_RDWR)
    try:
        with InProcessServer.serving(manager) as server, connected(server.path) as sock:
            register = bytes(8) + (0xABC).to_bytes(8, "big") + bytes(8)
            status, _, _ = request(sock, pr_out(len(register)), fd, register)
            assert status == ScsiStatus.GOOD
            status, _, data = request(sock, pr_in(), fd)
            assert status == ScsiStatus.GOOD
            assert ReadKeysData.from_bytes(data).keys == (0xABC,)
            # The engine saw the command: the state is the test's to inspect.
            assert manager.snapshot(fd).registrations
    finally:
        os.close(fd)
