# SPDX-License-Identifier: MIT
"""pr-manager-direct answers as the real qemu-pr-helper does on the same fds.

No SCSI device exists here, so the comparison uses every other kind of fd the kernel
refuses SG_IO on (qemu-pr-helper's errno mapping), read-only fds (its INVALID OPCODE for PR
OUT), and a loop device; the VM suite covers real LIO devices (tests/vm/test_direct.py).
With a stand-in for the ioctl, the last tests check that the ``timeout`` property bounds the
caller's wait even when the kernel never ends the command.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr.errors import QomprError
from qompr.linux.sgio import Direction
from qompr.linux.sgio import SgIoOutcome
from qompr.managers import PRManager
from qompr.managers import _direct
from qompr.options import process
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import FdFactory
from qompr.testing import HelperProcess
from qompr.testing import loop_device as attach_loop_device

KINDS = ["null", "null-ro", "zero", "reg", "reg-ro", "dir", "pipe-r", "sock", "memfd",
         "proc-ro", "loop", "loop-ro"]  # fmt: skip
PARAMS = PrOutParameters(reservation_key=0, sa_key=0x1234).to_bytes()
COMMANDS = [
    (PrInCdb(PrInAction.READ_KEYS, 255).to_bytes(), b""),
    (PrInCdb(PrInAction.REPORT_CAPABILITIES, 8).to_bytes(), b""),
    (PrOutCdb(PrOutAction.REGISTER, 0, 0, len(PARAMS)).to_bytes(), PARAMS),
]


@pytest.fixture(scope="module")
def fds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FdFactory]:
    work = tmp_path_factory.mktemp("fds")
    with contextlib.ExitStack() as stack:
        loop = None
        if os.geteuid() == 0 and shutil.which("losetup"):
            with contextlib.suppress(OSError):  # the loop kinds then skip, loudly
                loop = stack.enter_context(attach_loop_device(work))
        factory = FdFactory(work, loop)
        yield factory
        factory.close()


@pytest.fixture(scope="module")
def managers() -> Iterator[tuple[PRManager, PRManager]]:
    if shutil.which("qemu-pr-helper") is None and not Path("/usr/bin/qemu-pr-helper").exists():
        pytest.fail("qemu-pr-helper is not installed: run scripts/run-tests to install it")
    tree = qompr.new_tree(load_entrypoints=False)
    direct = tree.object_add("pr-manager-direct", "direct0")
    with HelperProcess(["/usr/bin/qemu-pr-helper"]) as real:
        helper = tree.object_add("pr-manager-helper", "real0", path=real.path)
        assert isinstance(direct, PRManager) and isinstance(helper, PRManager)
        yield direct, helper
        tree.object_del("real0")


def test_pr_out_on_read_only_fd_never_reaches_the_device() -> None:
    tree = qompr.new_tree(load_entrypoints=False)
    direct = tree.object_add("pr-manager-direct", "d0", timeout=5000)
    assert isinstance(direct, PRManager)
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        cdb, data = COMMANDS[2]
        result = direct.execute(fd, cdb, data)
    finally:
        os.close(fd)
    assert result.sense_code == SenseCode.INVALID_OPCODE
    assert result.sense == SenseCode.INVALID_OPCODE.to_bytes()
    assert tree.qom_get("/objects/d0", "timeout") == 5000


@pytest.mark.interop
@pytest.mark.parametrize("kind", KINDS)
def test_same_answers_as_pr_manager_helper_with_qemu_pr_helper(
    kind: str, fds: FdFactory, managers: tuple[PRManager, PRManager]
) -> None:
    # Not only the same sense code: the same bytes (the sense, not the 96-byte buffer), so
    # callers cannot tell the two managers apart (LIO's answers: tests/vm/test_direct.py).
    if kind.startswith("loop") and fds.loop_device is None:
        pytest.skip("LOUD SKIP: no loop device on this machine (needs root and losetup)")
    direct, real = managers
    for cdb, data in COMMANDS:
        ours = direct.execute(fds.make(kind), cdb, data)
        theirs = real.execute(fds.make(kind), cdb, data)
        assert ours == theirs, (kind, cdb.hex())
        assert len(ours.sense) in (0, 18)
        assert ours.status is not ScsiStatus.GOOD  # none of these fds is a SCSI device


def test_device_sense_is_cut_to_its_additional_length(monkeypatch: pytest.MonkeyPatch) -> None:
    lio = bytes.fromhex("700006000000000a000000002a0300000000").ljust(96, b"\0")
    descriptor = bytes.fromhex("7205260000000000").ljust(96, b"\0")
    tree = qompr.new_tree(load_entrypoints=False)
    manager = tree.object_add("pr-manager-direct", "d5")
    assert isinstance(manager, PRManager)
    for sense, kept in ((lio, lio[:18]), (descriptor, descriptor[:8])):

        def answer(fd: int, cdb: bytes, direction: Direction, *, s: bytes = sense,
                   **kwargs: Any) -> SgIoOutcome:  # fmt: skip
            return SgIoOutcome(0, status=0x02, driver_status=0x08, sense=s)

        monkeypatch.setattr(_direct, "sg_io", answer)
        fd = os.open("/dev/null", os.O_RDWR)  # PR OUT needs a writable fd
        try:
            for cdb, data in COMMANDS:
                assert manager.execute(fd, cdb, data).sense == kept
        finally:
            os.close(fd)


# -- the timeout bounds the caller's wait, even when the kernel never ends the command -----------


@pytest.fixture
def direct_fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[PRManager]:
    monkeypatch.setattr(_direct, "GRACE_MS", 0)
    tree = qompr.new_tree(load_entrypoints=False)
    manager = tree.object_add("pr-manager-direct", "d1", timeout=50)
    assert isinstance(manager, PRManager)
    yield manager


def test_a_command_the_device_never_ends_times_out_as_qemu_maps_did_time_out(
    monkeypatch: pytest.MonkeyPatch, direct_fast: PRManager
) -> None:
    # An SG_IO that never returns (LIO wedged by PREEMPT AND ABORT, tests/vm/test_direct.py):
    # the caller gets qemu-pr-helper's answer for host status DID_TIME_OUT after the timeout.
    release = threading.Event()
    calls: list[int] = []

    def stuck(fd: int, cdb: bytes, direction: Direction, **kwargs: Any) -> SgIoOutcome:
        calls.append(kwargs["timeout_ms"])
        release.wait(10)
        return SgIoOutcome(0)

    monkeypatch.setattr(_direct, "sg_io", stuck)
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        for cdb, data in COMMANDS:  # PR IN and PR OUT alike
            start = time.monotonic()
            result = direct_fast.execute(fd, cdb, data)
            elapsed = time.monotonic() - start
            assert result.status is ScsiStatus.CHECK_CONDITION
            assert result.sense_code == SenseCode.COMMAND_TIMEOUT
            assert result.sense == SenseCode.COMMAND_TIMEOUT.to_bytes()
            assert result.data == b""
            assert 0.04 < elapsed < 2.0
    finally:
        release.set()
        os.close(fd)
    assert calls == [50] * len(COMMANDS)  # the kernel is asked for the same timeout


def test_an_answer_within_the_timeout_is_passed_on(
    monkeypatch: pytest.MonkeyPatch, direct_fast: PRManager
) -> None:
    keys = bytes.fromhex("00000007 00000008 00000000000000a1")

    def answers(fd: int, cdb: bytes, direction: Direction, **kwargs: Any) -> SgIoOutcome:
        assert threading.current_thread() is not threading.main_thread()
        assert kwargs["cmd_len"] == 16 and direction is Direction.FROM_DEV
        assert kwargs["data_in_size"] == 8192  # as qemu-pr-helper, whatever the CDB says
        return SgIoOutcome(0, resid=8192 - len(keys), data=keys.ljust(8192, b"\0"))

    monkeypatch.setattr(_direct, "sg_io", answers)
    result = direct_fast.execute(0, PrInCdb(PrInAction.READ_KEYS, 12).to_bytes())
    assert (result.status, result.data) == (ScsiStatus.GOOD, keys[:12])


def test_the_kernels_own_timeout_answer_wins_within_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The kernel answers 50 ms after a 1 ms timeout (its timer runs late): within the grace,
    # its outcome, sense bytes included, is what the caller gets.
    kernel_sense = bytes.fromhex("700006000000000a000000002a0300").ljust(96, b"\0")

    def late(fd: int, cdb: bytes, direction: Direction, **kwargs: Any) -> SgIoOutcome:
        time.sleep(0.05)
        return SgIoOutcome(0, status=0x02, driver_status=0x08, sense=kernel_sense)

    monkeypatch.setattr(_direct, "sg_io", late)
    tree = qompr.new_tree(load_entrypoints=False)
    manager = tree.object_add("pr-manager-direct", "d2", timeout=1)
    assert isinstance(manager, PRManager)
    result = manager.execute(0, *COMMANDS[0])
    assert result.status is ScsiStatus.CHECK_CONDITION
    assert result.sense == kernel_sense[:18]
    assert result.sense_code == SenseCode.RESERVATIONS_PREEMPTED


def test_an_error_in_the_worker_reaches_the_caller(
    monkeypatch: pytest.MonkeyPatch, direct_fast: PRManager
) -> None:
    def broken(fd: int, cdb: bytes, direction: Direction, **kwargs: Any) -> SgIoOutcome:
        raise ctypes.ArgumentError("bad buffer")

    monkeypatch.setattr(_direct, "sg_io", broken)
    with pytest.raises(ctypes.ArgumentError, match="bad buffer"):
        direct_fast.execute(0, *COMMANDS[0])


def test_timeout_is_a_property_of_the_object_string() -> None:
    tree = qompr.new_tree(load_entrypoints=False)
    objects = process(tree, ["pr-manager-direct,id=d3,timeout=1500"])
    assert isinstance(objects, list) and isinstance(objects[0], PRManager)
    assert tree.qom_get("/objects/d3", "timeout") == 1500
    with pytest.raises(QomprError, match="timeout"):
        process(tree, ["pr-manager-direct,id=d4,timeout=0"])
