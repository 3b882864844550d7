# SPDX-License-Identifier: MIT
"""The ``pr-manager-emulated`` QOM type: creation, properties, fds, state files, the API."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qompr
from qompr import options
from qompr.errors import ObjectError
from qompr.errors import StateError
from qompr.managers import PRManager
from qompr.managers import PRManagerEmulated
from qompr.managers import pr_manager_lookup
from qompr.managers.emulated import POWER_ON_OCCURRED
from qompr.managers.emulated import StateFileError
from qompr.managers.emulated import StoreFailureError
from qompr.managers.emulated import StoreUnavailableError
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ReadKeysData
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import SenseKey

from .harness import new_manager
from .harness import pr_in
from .harness import pr_out

A, B = Nexus("A"), Nexus("B")
WRITE10 = bytes((Opcode.WRITE_10, *bytes(9)))


@pytest.fixture
def image_fds(tmp_path: Path) -> Iterator[tuple[int, int, int]]:
    """Two fds of one image and one fd of another."""
    one = tmp_path / "one.img"
    two = tmp_path / "two.img"
    one.write_bytes(bytes(512))
    two.write_bytes(bytes(512))
    fds = (os.open(one, os.O_RDWR), os.open(one, os.O_RDONLY), os.open(two, os.O_RDWR))
    yield fds
    for fd in fds:
        os.close(fd)


def keys(manager: PRManagerEmulated, fd: int, nexus: Nexus = A) -> tuple[int, ...]:
    result = manager.execute(fd, pr_in(PrInAction.READ_KEYS), nexus=nexus)
    assert result.ok, result
    return ReadKeysData.from_bytes(result.data).keys


def test_type_is_registered_and_user_creatable(tree: ObjectTree) -> None:
    names = {t["name"] for t in tree.qom_list_types(implements="pr-manager")}
    assert "pr-manager-emulated" in names
    props = {p["name"]: p for p in tree.qom_list_properties("pr-manager-emulated")}
    assert props["mode"]["type"] == "PrEmulationMode"
    assert props["mode"]["default-value"] == "lio"
    assert props["initiator-rule"]["default-value"] == "pid"
    for name in ("state", "lu-name", "initiator", "target-ports", "max-registrations"):
        assert name in props


def test_created_from_an_object_option(tree: ObjectTree, tmp_path: Path) -> None:
    state = tmp_path / "pr.db"
    objs = options.process(tree, [f"pr-manager-emulated,id=emu0,state={state},mode=spc4"])
    assert isinstance(objs, list)
    manager = pr_manager_lookup(tree, "emu0")
    assert isinstance(manager, PRManagerEmulated) and isinstance(manager, PRManager)
    assert manager.mode == "spc4"
    assert tree.qom_get("/objects/emu0", "state") == str(state)
    assert state.exists()


def test_bad_property_values(tree: ObjectTree) -> None:
    with pytest.raises(ObjectError, match="does not accept value 'strict'"):
        tree.object_add("pr-manager-emulated", "x", mode="strict")
    with pytest.raises(ObjectError, match="range"):
        tree.object_add("pr-manager-emulated", "y", target_ports=0)
    assert tree.find_object("x") is None and tree.find_object("y") is None


def test_properties_are_fixed_after_creation(tree: ObjectTree) -> None:
    manager = new_manager(tree)
    with pytest.raises(ObjectError, match="only be set at creation"):
        tree.qom_set("/objects/emu0", "mode", "spc4")
    assert manager.mode == "lio"


def test_unusable_state_file_fails_creation(tree: ObjectTree, tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="Could not open PR state file"):
        tree.object_add("pr-manager-emulated", "emu0", state=str(tmp_path))
    assert tree.find_object("emu0") is None


def test_not_complete_is_a_state_error(tree: ObjectTree) -> None:
    obj = tree.object_add("pr-manager-emulated", "emu0", complete=False)
    assert isinstance(obj, PRManagerEmulated)
    with pytest.raises(StateError, match="not complete"):
        obj.execute(-1, pr_in(PrInAction.READ_KEYS))


def test_logical_unit_is_the_file_behind_the_fd(
    tree: ObjectTree, image_fds: tuple[int, int, int]
) -> None:
    one_rw, one_ro, two = image_fds
    manager = new_manager(tree, lu_name="")
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x11)
    assert manager.execute(one_rw, cdb, data, nexus=A).ok
    assert keys(manager, one_ro) == (0x11,)  # same file, other fd
    assert keys(manager, two) == ()  # other file
    assert manager.logical_unit(one_rw) == manager.logical_unit(one_ro)
    bad = manager.execute(9999, pr_in(PrInAction.READ_KEYS), nexus=A)
    assert bad.sense_code == SenseCode.LUN_NOT_SUPPORTED


def test_lu_name_joins_every_fd(tree: ObjectTree, image_fds: tuple[int, int, int]) -> None:
    one, _, two = image_fds
    manager = new_manager(tree, lu_name="shared")
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x22)
    assert manager.execute(one, cdb, data, nexus=A).ok
    assert keys(manager, two) == (0x22,)
    assert manager.logical_unit(-1) == "shared"


def test_default_initiator(tree: ObjectTree) -> None:
    named = new_manager(tree, "named", initiator="host-a")
    assert named.default_nexus == Nexus("host-a")
    by_pid = new_manager(tree, "bypid")
    assert by_pid.default_nexus.initiator == f"pid:{os.getpid()}"
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x33)
    assert named.execute(-1, cdb, data).ok  # no nexus: the default one
    snap = named.snapshot(-1)
    assert [n for n, _ in snap.registrations] == [Nexus("host-a")]
    assert named.nexus_for_pid(77, target_port=2) == Nexus("pid:77", 2)


def test_check_command_and_unit_attentions(tree: ObjectTree) -> None:
    manager = new_manager(tree)
    for nexus, key in ((A, 1), (B, 2)):
        cdb, data = pr_out(PrOutAction.REGISTER, sark=key)
        assert manager.execute(-1, cdb, data, nexus=nexus).ok
    cdb, data = pr_out(PrOutAction.RESERVE, rk=1, pr_type=PrType.WE_RO)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    assert manager.check_command(-1, WRITE10, nexus=B) is None
    assert manager.check_command(-1, WRITE10, nexus=Nexus("C")) is not None
    cdb, data = pr_out(PrOutAction.RELEASE, rk=1, pr_type=PrType.WE_RO)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    assert manager.unit_attentions(-1, B) == (SenseCode.RESERVATIONS_RELEASED,)
    assert manager.unit_attentions(-1, B) == (SenseCode.RESERVATIONS_RELEASED,)  # not cleared
    assert manager.unit_attentions(-1, A) == ()
    result = manager.check_command(-1, WRITE10, nexus=B)
    assert result is not None and result.sense_code == SenseCode.RESERVATIONS_RELEASED
    assert manager.unit_attentions(-1, B) == ()
    assert manager.check_command(-1, WRITE10, nexus=B) is None


def test_preempt_and_abort_calls_the_abort_handler(tree: ObjectTree) -> None:
    manager = new_manager(tree)
    aborted: list[frozenset[Nexus]] = []
    manager.abort_handler = aborted.append
    for nexus, key in ((A, 1), (B, 2)):
        cdb, data = pr_out(PrOutAction.REGISTER, sark=key)
        assert manager.execute(-1, cdb, data, nexus=nexus).ok
    cdb, data = pr_out(PrOutAction.PREEMPT_AND_ABORT, rk=2, sark=1, pr_type=PrType.EA)
    assert manager.execute(-1, cdb, data, nexus=B).ok
    assert aborted == [frozenset({A})]


def test_execute_runs_the_hook_and_async_form(tree: ObjectTree) -> None:
    seen: list[tuple[bytes, ScsiStatus]] = []

    class Recorder:
        @qompr.hookimpl
        def qompr_command_executed(self, manager: Any, cdb: bytes, result: Any) -> None:
            seen.append((cdb, result.status))

    assert tree.hook is not None
    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(Recorder())
    hooked = ObjectTree(tree.types, hook=pm.hook)
    manager = new_manager(hooked)
    cdb = pr_in(PrInAction.REPORT_CAPABILITIES)
    result = asyncio.run(manager.execute_async(-1, cdb, nexus=A))
    assert result.data == bytes.fromhex("00081d90ea010000")
    assert seen == [(cdb, ScsiStatus.GOOD)]


def test_state_file_survives_object_del_as_aptpl_says(tree: ObjectTree, tmp_path: Path) -> None:
    state = str(tmp_path / "pr.db")
    manager = new_manager(tree, state=state, state_sync="normal")
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x44, aptpl=True)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    cdb, data = pr_out(PrOutAction.RESERVE, rk=0x44, pr_type=PrType.EA)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    tree.object_del("emu0")
    # A restart of the engine that asks for a power cycle (the only user of the file).
    again = new_manager(tree, state=state, start="power-cycle")
    snap = again.snapshot(-1)
    assert [(n, r.key) for n, r in snap.registrations] == [(A, 0x44)]
    assert snap.reservation is not None and snap.reservation.holder == A
    assert snap.generation == 0
    assert again.unit_attentions(-1, A) == (POWER_ON_OCCURRED,)
    result = again.check_command(-1, WRITE10, nexus=B)
    assert result is not None and result.status == ScsiStatus.RESERVATION_CONFLICT


def test_restart_resumes_the_state_file(tree: ObjectTree, tmp_path: Path) -> None:
    # Issue 16 defect 3: a restart (kill and start, what a supervisor does) was played as a
    # power cycle; the still-running initiator's registration vanished without a word.
    state = str(tmp_path / "pr.db")
    manager = new_manager(tree, state=state, state_sync="normal")
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x44)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    tree.object_del("emu0")
    again = new_manager(tree, state=state)
    assert keys(again, -1) == (0x44,)
    assert again.snapshot(-1).generation == 1
    cdb, data = pr_out(PrOutAction.RESERVE, rk=0x44, pr_type=PrType.WE)
    assert again.execute(-1, cdb, data, nexus=A).ok


def test_power_cycle_tells_every_known_nexus(tree: ObjectTree, tmp_path: Path) -> None:
    manager = new_manager(tree, state=str(tmp_path / "pr.db"), state_sync="normal")
    other = new_manager(tree, "emu1", state=str(tmp_path / "pr.db"), state_sync="normal")
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x1)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x2, aptpl=True)
    assert manager.execute(-1, cdb, data, nexus=B).ok
    reader = Nexus("R")
    assert manager.execute(-1, pr_in(PrInAction.READ_KEYS), nexus=reader).ok
    other.power_cycle()  # another process sharing the file plays it
    for nexus in (A, B):
        result = manager.execute(-1, pr_in(PrInAction.READ_KEYS), nexus=nexus)
        assert result.status == ScsiStatus.CHECK_CONDITION
        assert result.sense_code == POWER_ON_OCCURRED
    # The last APTPL bit was 1: both registrations survive; R only read, so is not told.
    assert keys(manager, -1, reader) == (0x1, 0x2)
    assert manager.snapshot(-1).generation == 0
    # APTPL 0 now: the registrations go, and their nexuses are told again.
    cdb, data = pr_out(PrOutAction.REGISTER, rk=0x1, sark=0x3)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    manager.power_cycle(-1)
    assert keys(manager, -1, reader) == ()
    assert other.unit_attentions(-1, A) == (POWER_ON_OCCURRED,)
    assert other.unit_attentions(-1, B) == (POWER_ON_OCCURRED,)
    cdb, data = pr_out(PrOutAction.RESERVE, rk=0x3, pr_type=PrType.WE)
    assert manager.execute(-1, cdb, data, nexus=A).sense_code == POWER_ON_OCCURRED
    not_ready = SenseCode.NOT_READY_LUN_COMM_FAILURE
    assert manager.execute(-1, cdb, data, nexus=A).sense_code == not_ready


def test_power_cycle_of_one_logical_unit(tree: ObjectTree, image_fds: tuple[int, int, int]) -> None:
    first, _, second = image_fds
    manager = new_manager(tree, lu_name="")
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x5)
    assert manager.execute(first, cdb, data, nexus=A).ok
    assert manager.execute(second, cdb, data, nexus=A).ok
    manager.power_cycle(first)
    assert manager.snapshot(first).keys == ()
    assert manager.snapshot(second).keys == (0x5,)
    assert manager.unit_attentions(first, A) == (POWER_ON_OCCURRED,)
    assert manager.unit_attentions(second, A) == ()


def test_power_cycle_in_memory(tree: ObjectTree) -> None:
    manager = new_manager(tree)
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x55)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    manager.power_cycle()
    assert keys(manager, -1, B) == ()
    assert manager.execute(-1, cdb, data, nexus=A).sense_code == POWER_ON_OCCURRED
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x56, aptpl=True)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    manager.power_cycle()
    assert keys(manager, -1, B) == (0x56,)
    assert manager.snapshot(-1).generation == 0


def test_power_cycle_with_state_file(tree: ObjectTree, tmp_path: Path) -> None:
    manager = new_manager(tree, state=str(tmp_path / "pr.db"), state_sync="normal")
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x57)
    assert manager.execute(-1, cdb, data, nexus=A).ok
    manager.power_cycle()
    assert keys(manager, -1, B) == ()
    assert manager.unit_attentions(-1, A) == (POWER_ON_OCCURRED,)


def test_storage_failure_is_a_target_failure(
    tree: ObjectTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = new_manager(tree, state=str(tmp_path / "pr.db"), state_sync="normal")
    store = manager._store
    assert store is not None

    def fail(*args: object, **kwargs: object) -> None:
        raise StoreFailureError("disk I/O error")

    monkeypatch.setattr(store, "transact", fail)
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x66)
    result = manager.execute(-1, cdb, data, nexus=A)
    assert result.sense_code == SenseCode.TARGET_FAILURE


def test_a_store_that_does_not_answer_in_time_is_retryable(
    tree: ObjectTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = new_manager(tree, state=str(tmp_path / "pr.db"), state_sync="normal")
    store = manager._store
    assert store is not None

    def busy(*args: object, **kwargs: object) -> None:
        raise StoreUnavailableError("failing over")

    monkeypatch.setattr(store, "transact", busy)
    cdb, data = pr_out(PrOutAction.REGISTER, sark=0x66)
    result = manager.execute(-1, cdb, data, nexus=A)
    # ABORTED COMMAND, LOGICAL UNIT COMMUNICATION FAILURE: retried by Linux, Windows and QEMU.
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense_code == SenseCode.LUN_COMM_FAILURE
    assert result.sense_code == SenseCode(SenseKey.ABORTED_COMMAND, 0x08, 0x00)


def test_spc2_reserve_and_request_sense_through_run(tree: ObjectTree) -> None:
    manager = new_manager(tree)
    assert manager.execute(-1, bytes((Opcode.RESERVE_6, *bytes(5))), nexus=A).ok
    result = manager.check_command(-1, WRITE10, nexus=B)
    assert result is not None and result.status == ScsiStatus.RESERVATION_CONFLICT
    assert manager.snapshot(-1).legacy_holder == A
    sense = manager.execute(-1, bytes((Opcode.REQUEST_SENSE, 0, 0, 0, 18, 0)), nexus=B)
    assert sense.ok and sense.data == SenseCode.NO_SENSE.to_bytes()
    unknown = manager.execute(-1, WRITE10, nexus=A)
    assert unknown.sense_code == SenseCode.INVALID_OPCODE
