# SPDX-License-Identifier: MIT
"""The abstract pr-manager: execute, the asyncio form, hooks, in-use refusal, lookup."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import qompr
from qompr.errors import ObjectError
from qompr.managers import PRManager
from qompr.managers import pr_manager_lookup
from qompr.managers import query_pr_managers
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus

READ_KEYS = bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0])


class Gate(PRManager, qom_type="test-gate"):
    """Blocks in run() until released, and records what it was given."""

    def instance_init(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[tuple[int, bytes, bytes, Nexus | None]] = []

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        self.seen.append((fd, cdb, data, nexus))
        self.entered.set()
        self.release.wait(5)
        return ScsiResult(ScsiStatus.GOOD, b"", b"\x00" * 8)

    def is_connected(self) -> bool:
        return False


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @qompr.hookimpl
    def qompr_command_executed(self, manager: PRManager, cdb: bytes, result: ScsiResult) -> None:
        self.calls.append(("executed", (manager.id, cdb, result.status)))

    @qompr.hookimpl
    def qompr_pr_manager_status_changed(self, id: str, connected: bool) -> None:
        self.calls.append(("status", (id, connected)))


@pytest.fixture
def setup() -> tuple[ObjectTree, Recorder]:
    pm = qompr.get_plugin_manager(load_entrypoints=False)
    rec = Recorder()
    pm.register(rec)
    tree = qompr.new_tree(pm)
    tree.types.register(Gate)
    return tree, rec


def test_pr_manager_is_abstract_and_user_creatable(setup: tuple[ObjectTree, Recorder]) -> None:
    tree, _ = setup
    assert {"name": "pr-manager", "abstract": True, "parent": "object"} in tree.qom_list_types(
        abstract=True
    )
    assert tree.types.is_user_creatable("pr-manager")
    with pytest.raises(ObjectError, match="object type 'pr-manager' is abstract"):
        tree.user_creatable_add_type("pr-manager", "p", {})


def test_execute_calls_run_and_the_hook(setup: tuple[ObjectTree, Recorder]) -> None:
    tree, rec = setup
    gate = tree.object_add("test-gate", "g0")
    assert isinstance(gate, Gate)
    gate.release.set()
    nexus = Nexus("host-a")
    result = gate.execute(7, READ_KEYS, b"", nexus=nexus)
    assert result.ok and gate.seen == [(7, READ_KEYS, b"", nexus)]
    assert rec.calls == [("executed", ("g0", READ_KEYS, ScsiStatus.GOOD))]


def test_status_changed_reaches_the_hook(setup: tuple[ObjectTree, Recorder]) -> None:
    tree, rec = setup
    gate = tree.object_add("test-gate", "g0")
    assert isinstance(gate, Gate)
    gate.status_changed(True)
    gate.status_changed(False)
    assert rec.calls == [("status", ("g0", True)), ("status", ("g0", False))]


def test_busy_manager_refuses_deletion(setup: tuple[ObjectTree, Recorder]) -> None:
    tree, _ = setup
    gate = tree.object_add("test-gate", "g0")
    assert isinstance(gate, Gate)
    worker = threading.Thread(target=gate.execute, args=(0, READ_KEYS))
    worker.start()
    assert gate.entered.wait(5)
    with pytest.raises(ObjectError, match="^object 'g0' is in use, can not be deleted$"):
        tree.object_del("g0")
    gate.release.set()
    worker.join(5)
    tree.object_del("g0")
    assert tree.user_objects() == []


def test_execute_async_runs_in_a_worker_thread(setup: tuple[ObjectTree, Recorder]) -> None:
    tree, _ = setup
    gate = tree.object_add("test-gate", "g0")
    assert isinstance(gate, Gate)

    async def main() -> ScsiResult:
        task = asyncio.ensure_future(gate.execute_async(3, READ_KEYS))
        # The event loop stays free while run() blocks in its thread.
        while not gate.entered.is_set():
            await asyncio.sleep(0.01)
        gate.release.set()
        return await task

    result = asyncio.run(main())
    assert result.data == b"\x00" * 8


def test_lookup_and_query(setup: tuple[ObjectTree, Recorder]) -> None:
    tree, _ = setup
    tree.object_add("test-gate", "g0")
    tree.object_add("pr-manager-helper", "h0", path="/x", complete=False)
    assert pr_manager_lookup(tree, "g0").id == "g0"
    with pytest.raises(ObjectError, match="^No persistent reservation manager with id 'zz'$"):
        pr_manager_lookup(tree, "zz")
    tree.objects.add_child("plain", tree.new_object("container"))
    with pytest.raises(
        ObjectError, match="^Object with id 'plain' is not a persistent reservation manager$"
    ):
        pr_manager_lookup(tree, "plain")
    assert query_pr_managers(tree) == [
        {"id": "g0", "connected": False},
        {"id": "h0", "connected": False},
    ]
