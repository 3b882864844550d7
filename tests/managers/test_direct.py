# SPDX-License-Identifier: MIT
"""pr-manager-direct answers as the real qemu-pr-helper does on the same fds.

No SCSI device exists here, so the comparison uses every other kind of fd the kernel
refuses SG_IO on (qemu-pr-helper's errno mapping), read-only fds (its INVALID OPCODE for PR
OUT), and a loop device; the VM suite covers real LIO devices.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import qompr
from qompr.daemon.testing import FdFactory
from qompr.daemon.testing import HelperProcess
from qompr.managers import PRManager
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode

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
    loop = None
    if os.geteuid() == 0 and shutil.which("losetup"):
        image = work / "disk.img"
        image.write_bytes(bytes(1 << 20))
        proc = subprocess.run(["losetup", "--find", "--show", str(image)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        loop = proc.stdout.strip() or None
    factory = FdFactory(work, loop)
    yield factory
    factory.close()
    if loop:
        subprocess.run(["losetup", "-d", loop], check=False)


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


def _norm(result: ScsiResult) -> tuple[int, bytes, bytes]:
    # The helper protocol always carries 96 sense bytes; compare what was built.
    return int(result.status), result.sense.rstrip(b"\0"), result.data


@pytest.mark.interop
@pytest.mark.parametrize("kind", KINDS)
def test_same_answers_as_qemu_pr_helper(
    kind: str, fds: FdFactory, managers: tuple[PRManager, PRManager]
) -> None:
    if kind.startswith("loop") and fds.loop_device is None:
        pytest.skip("LOUD SKIP: no loop device on this machine (needs root and losetup)")
    direct, real = managers
    for cdb, data in COMMANDS:
        ours = direct.execute(fds.make(kind), cdb, data)
        theirs = real.execute(fds.make(kind), cdb, data)
        assert _norm(ours) == _norm(theirs), (kind, cdb.hex())
        assert ours.status is not ScsiStatus.GOOD  # none of these fds is a SCSI device


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
    assert tree.qom_get("/objects/d0", "timeout") == 5000
