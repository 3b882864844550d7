# SPDX-License-Identifier: MIT
"""qompr's ``pr-manager-helper`` against the real qemu-pr-helper 7.2.

What QEMU's client would hand the guest is the raw reply (status, sense, data); the client
must give the same values (its sense trimmed to the 18 bytes that fixed-format sense uses).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr.managers import PRManagerHelper
from qompr.managers import query_pr_managers
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import HANDSHAKE
from qompr.testing import FdFactory
from qompr.testing import HelperProcess
from qompr.testing import loop_device as attach_loop_device
from tests._support.wire import Script
from tests._support.wire import Step
from tests._support.wire import run_script

pytestmark = pytest.mark.interop

QEMU_PR_HELPER = shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"
READ_KEYS = bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 255, 0])
REGISTER = bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0])
PARAMS = bytes(8) + (0x1234).to_bytes(8, "big") + bytes(8)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    @qompr.hookimpl
    def qompr_pr_manager_status_changed(self, manager: Any, id: str, connected: bool) -> None:
        self.seen.append((id, connected))


@pytest.fixture
def real_helper(tmp_path: Path) -> Iterator[HelperProcess]:
    if not os.path.exists(QEMU_PR_HELPER):
        pytest.skip(f"REAL qemu-pr-helper NOT INSTALLED at {QEMU_PR_HELPER}")
    if os.geteuid() != 0:
        pytest.skip("qemu-pr-helper must start as root (it drops privileges with libcap-ng)")
    with HelperProcess([QEMU_PR_HELPER], str(tmp_path)) as helper:
        yield helper


@pytest.fixture
def manager(real_helper: HelperProcess) -> Iterator[tuple[PRManagerHelper, Events]]:
    events = Events()
    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(events)
    tree = qompr.new_tree(pm)
    obj = tree.object_add("pr-manager-helper", "real", path=real_helper.path)
    assert isinstance(obj, PRManagerHelper)
    obj.reconnect_delay = 0.2
    yield obj, events
    tree.object_del("real")


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        try:
            dev = stack.enter_context(attach_loop_device(tmp_path))
        except OSError as exc:
            pytest.skip(f"NO LOOP DEVICE (losetup failed: {exc})")
        yield dev


def test_handshake_and_connected_event(manager: tuple[PRManagerHelper, Events]) -> None:
    obj, events = manager
    assert obj.is_connected()
    assert events.seen == [("real", True)]
    assert query_pr_managers(obj.tree) == [{"id": "real", "connected": True}]


@pytest.mark.parametrize(
    "case",
    [
        ("reg", READ_KEYS, b"", SenseCode.IO_ERROR),
        ("reg", REGISTER, PARAMS, SenseCode.IO_ERROR),
        ("reg-ro", READ_KEYS, b"", SenseCode.IO_ERROR),
        ("reg-ro", REGISTER, PARAMS, SenseCode.INVALID_OPCODE),
        ("null-ro", REGISTER, PARAMS, SenseCode.INVALID_OPCODE),
        ("loop", READ_KEYS, b"", SenseCode.INVALID_FIELD),
        ("loop", REGISTER, PARAMS, SenseCode.INVALID_FIELD),
        ("loop-ro", READ_KEYS, b"", SenseCode.INVALID_FIELD),
        ("loop-ro", REGISTER, PARAMS, SenseCode.INVALID_OPCODE),
    ],
)
def test_results_match_the_raw_replies_qemu_would_pass_on(
    manager: tuple[PRManagerHelper, Events],
    real_helper: HelperProcess,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    case: tuple[str, bytes, bytes, SenseCode],
) -> None:
    kind, cdb, data, expected = case
    obj, _ = manager
    loop = request.getfixturevalue("loop_device") if kind.startswith("loop") else None
    fds = FdFactory(tmp_path, loop)
    fd = fds.make(kind)
    try:
        result = obj.execute(fd, cdb, data)
    finally:
        fds.close()
    raw = run_script(
        real_helper.path,
        Script("raw", (Step(HANDSHAKE), Step(cdb.ljust(16, b"\0") + data, (kind,))), probe=False),
        FdFactory(tmp_path, loop),
    )
    [reply] = raw.replies
    assert result.status == reply.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == reply.sense[:18]
    assert result.data == reply.data == b""
    assert result.sense_code == expected


def test_oversized_allocation_is_refused_without_the_helper(
    manager: tuple[PRManagerHelper, Events], real_helper: HelperProcess
) -> None:
    obj, _ = manager
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        result = obj.execute(fd, bytes([0x5E, 0, 0, 0, 0, 0, 0, 0x20, 0x01, 0]))
    finally:
        os.close(fd)
    assert result.sense_code == SenseCode.INVALID_FIELD  # QEMU: -EINVAL before sending
    assert obj.is_connected()  # the helper would have closed: it was never asked


def test_helper_restart_is_noticed_and_the_next_command_reconnects(
    manager: tuple[PRManagerHelper, Events], real_helper: HelperProcess
) -> None:
    obj, events = manager
    # The restart must land within the command's reconnect attempts: 50 x 0.2 s leaves room
    # for a slow start of qemu-pr-helper on a loaded machine (5 attempts did not).
    obj.max_reconnect_attempts = 50
    real_helper.stop()
    deadline = time.monotonic() + 5
    while obj.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not obj.is_connected(), "the idle connection's hang-up went unnoticed"
    assert events.seen == [("real", True), ("real", False)]
    # Bring the helper back while the command is in its reconnect attempts.
    restarter = threading.Timer(0.3, real_helper.start)
    restarter.start()
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        result = obj.execute(fd, READ_KEYS)
    finally:
        os.close(fd)
        restarter.join()
    assert result.sense_code == SenseCode.IO_ERROR  # answered by the restarted helper
    assert events.seen == [("real", True), ("real", False), ("real", True)]
