# SPDX-License-Identifier: MIT
"""Generated QEMU arguments are accepted by the real qemu-system-x86_64.

A loop device stands in for the shared disk (``host_device`` needs a block device), and the
corpus' fake helper for qemu-pr-helper.  QEMU must start, report the manager connected, and
show the disk's nodes with the manager attached.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr.embed import drive_args
from qompr.embed import managed_alias
from qompr.embed import object_args
from qompr.embed import scsi_block_disk
from qompr.embed import unmanaged_alias
from qompr.managers import PRManager
from qompr.testing import loop_device as attach_loop_device
from tests._support import placeholders

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.interop
QEMU = ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S"]


@pytest.fixture(scope="module")
def loopdev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is not installed: run scripts/run-tests to install it")
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("LOUD SKIP: needs root and losetup to make a block device for host_device")
    with contextlib.ExitStack() as stack:
        try:
            dev = stack.enter_context(attach_loop_device(tmp_path_factory.mktemp("disk")))
        except OSError as exc:
            pytest.skip(f"LOUD SKIP: this machine cannot attach a loop device: {exc}")
        yield dev


@pytest.fixture(scope="module")
def helper_sock() -> Iterator[str]:
    with placeholders.environment() as tmp:
        yield str(tmp / "s1.sock")


def qmp(argv: list[str], *commands: str) -> list[Any]:
    """Run QEMU with QMP on stdio; return the ``return`` of each command, or its error."""
    lines = [json.dumps({"execute": "qmp_capabilities"})]
    lines += [json.dumps({"execute": c}) for c in commands]
    lines.append(json.dumps({"execute": "quit"}))
    proc = subprocess.run(
        [*QEMU, *argv, "-qmp", "stdio"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    answers = [r.get("return", r.get("error")) for r in replies if "return" in r or "error" in r]
    return answers[1 : 1 + len(commands)]


def _manager(alias: str, path: str) -> PRManager:
    tree = qompr.new_tree(load_entrypoints=False)
    obj = tree.object_add("pr-manager-helper", alias, path=path, complete=False)
    assert isinstance(obj, PRManager)
    return obj


def test_aliases_are_libvirts() -> None:
    assert managed_alias() == "pr-helper0"
    assert unmanaged_alias("libvirt-1-storage") == "pr-helper-libvirt-1-storage"


@pytest.mark.parametrize("json_form", [True, False])
def test_blockdev_with_pr_manager_accepted(loopdev: str, helper_sock: str, json_form: bool) -> None:
    manager = _manager(managed_alias(), helper_sock)
    disk = scsi_block_disk(loopdev, manager.id or "")
    argv = object_args(manager, json_form=json_form) + disk.argv(device=False)
    managers, nodes = qmp(argv, "query-pr-managers", "query-named-block-nodes")
    assert managers == [{"connected": True, "id": "pr-helper0"}]
    by_name = {n["node-name"]: n for n in nodes}
    assert by_name["libvirt-1-storage"]["drv"] == "host_device"
    assert by_name["libvirt-1-storage"]["file"] == loopdev
    assert by_name["libvirt-1-format"]["drv"] == "raw"


def test_drive_with_file_pr_manager_accepted(loopdev: str, helper_sock: str) -> None:
    alias = unmanaged_alias("libvirt-1-storage")
    manager = _manager(alias, helper_sock)
    (managers, block) = qmp(
        object_args(manager) + drive_args(loopdev, alias), "query-pr-managers", "query-block"
    )
    assert managers == [{"connected": True, "id": alias}]
    assert [b["device"] for b in block] == ["drive0"]
    assert block[0]["inserted"]["file"] == loopdev


def test_unknown_manager_in_blockdev_is_refused_by_qemu(loopdev: str) -> None:
    disk = scsi_block_disk(loopdev, "pr-helper0")
    proc = subprocess.run(
        [*QEMU, *disk.argv(device=False)], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 1
    assert "No persistent reservation manager with id 'pr-helper0'" in proc.stderr


def test_scsi_block_device_shape() -> None:
    disk = scsi_block_disk("/dev/sdb", "pr-helper0", index=2, scsi_id=1, migrate_pr=True)
    assert disk.device == {
        "driver": "scsi-block", "bus": "scsi0.0", "channel": 0, "scsi-id": 1, "lun": 0,
        "drive": "libvirt-2-format", "id": "scsi0-0-1-0", "migrate-pr": True,
    }  # fmt: skip
    assert disk.storage["pr-manager"] == "pr-helper0"
    assert disk.format["file"] == "libvirt-2-storage"
