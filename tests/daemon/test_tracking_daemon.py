# SPDX-License-Identifier: MIT
"""PR tracking and QEMU 11's destination sequence through a real ``qompr-pr-helper`` with the
emulated backend answering as LIO: two client processes stand in for the source and the
destination QEMU on one host (connected at once), replaying QEMU 11's exact CDBs; the
tracking read on the control socket; and the ``qompr.embed`` handover through the helper."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qompr.embed import ControlError
from qompr.embed import Migration
from qompr.embed import PRPath
from qompr.embed import close_path
from qompr.embed import helper_path
from qompr.embed import query_tracking
from qompr.plugins import new_tree
from qompr.scsi import PrInAction
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData

from .tracking_bed import CHECK_CONDITION
from .tracking_bed import CONFLICT
from .tracking_bed import GOOD
from .tracking_bed import KEY
from .tracking_bed import OTHER
from .tracking_bed import Bed
from .tracking_bed import Qemu
from .tracking_bed import full_status
from .tracking_bed import running_bed
from .tracking_bed import tid


@pytest.fixture
def bed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Bed]:
    with running_bed(tmp_path, getattr(request, "param", "pid")) as the_bed:
        yield the_bed


def guest_registered(bed: Bed, pr_type: int) -> tuple[Qemu, Qemu]:
    """The source QEMU ``vm1`` registers KEY (and reserves *pr_type* unless 0), another
    node registers OTHER; both clients."""
    source, node = bed.qemu("vm1"), bed.qemu("node2")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    assert node.out(PrOutAction.REGISTER, sark=OTHER) == GOOD
    if pr_type:
        assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=pr_type) == GOOD
    return source, node


@pytest.mark.parametrize("pr_type", [0, 1, 3, 5, 6, 7, 8])
def test_qemu11_destination_sequence_with_pid_initiators(bed: Bed, pr_type: int) -> None:
    source, node = guest_registered(bed, pr_type)
    destination = bed.qemu("vm1")  # the incoming QEMU, connected while the source still is
    # QEMU 11's post_load, byte for byte.
    assert destination.out(PrOutAction.REGISTER, rk=0, sark=KEY) == GOOD
    assert destination.out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=pr_type) == GOOD
    status = full_status(node)
    assert set(status) == {tid(f"pid:{destination.pid}"), tid(f"pid:{node.pid}")}
    key, holder, held = status[tid(f"pid:{destination.pid}")]
    assert key == KEY
    if pr_type:
        assert (holder, held) == (True, pr_type)
        res = ReadReservationData.from_bytes(destination.read(PrInAction.READ_RESERVATION))
        assert res.type == pr_type
    else:
        assert not any(h for _, h, _ in status.values())
    assert ReadKeysData.from_bytes(destination.read(PrInAction.READ_KEYS)).keys.count(KEY) == 1
    # The source's registration is gone: its key no longer opens anything.
    assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=1) in (CONFLICT, CHECK_CONDITION)
    entries = {e.pid: e for e in query_tracking(bed.control, vm="vm1")}
    assert set(entries) == {source.pid, destination.pid}
    dst = entries[destination.pid]
    assert (dst.key, dst.type, dst.connected, dst.lu) == (KEY, pr_type, True, "lu0")
    assert dst.initiator == f"pid:{destination.pid}"
    # The source's view is QEMU's: what its guest did (it is stale now, as in QEMU).
    assert (entries[source.pid].key, entries[source.pid].type) == (KEY, pr_type)


@pytest.mark.parametrize("bed", ["pid:passthrough"], indirect=True)
def test_qemu11_passthrough_is_qemu_pr_helpers(bed: Bed) -> None:
    # The default: QEMU's PREEMPT reaches the target as sent.  LIO refuses TYPE 0, and the
    # source's registration stays (what the real qemu-pr-helper gives too).
    source = bed.qemu("vm1")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    destination = bed.qemu("vm1")
    assert destination.out(PrOutAction.REGISTER, rk=0, sark=KEY) == GOOD
    assert destination.out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=0) == CHECK_CONDITION
    status = full_status(destination)
    assert status == {
        tid(f"pid:{source.pid}"): (KEY, False, 0),
        tid(f"pid:{destination.pid}"): (KEY, False, 0),
    }
    # Tracked all the same.
    assert {e.pid for e in query_tracking(bed.control)} == {source.pid, destination.pid}


@pytest.mark.parametrize("bed", ["vm-name"], indirect=True)
@pytest.mark.parametrize("pr_type", [0, 5])
def test_qemu11_destination_sequence_with_one_nexus(bed: Bed, pr_type: int) -> None:
    # initiator-rule=vm-name: both QEMUs of one host are "vm:vm1", one I_T nexus, as both
    # are one host initiator on a real LU.
    source = bed.qemu("vm1")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    if pr_type:
        assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=pr_type) == GOOD
    destination = bed.qemu("vm1")
    before = full_status(destination)
    assert destination.out(PrOutAction.REGISTER, rk=0, sark=KEY) == CONFLICT
    answer = destination.out(PrOutAction.PREEMPT, rk=KEY, sark=KEY, pr_type=pr_type)
    # PREEMPT of itself keeps the reservation; TYPE 0 is refused as LIO refuses it.
    assert answer == (GOOD if pr_type else CHECK_CONDITION)
    assert full_status(destination) == before == {tid("vm:vm1"): (KEY, bool(pr_type), pr_type)}
    source.close()
    bed.clients.remove(source)
    # The nexus outlives the source QEMU: the destination's guest still holds it all.
    assert full_status(destination) == before


def test_control_query_errors(bed: Bed) -> None:
    with pytest.raises(ControlError, match="Parameter 'disk' is unexpected"):
        from qompr.embed._migration import _control_exchange

        _control_exchange(
            bed.control, {"execute": "query-pr-tracking", "arguments": {"disk": 1}}, 5
        )
    with pytest.raises(ControlError, match="Invalid parameter type for 'pid'"):
        from qompr.embed._migration import _control_exchange

        _control_exchange(
            bed.control, {"execute": "query-pr-tracking", "arguments": {"pid": "1"}}, 5
        )
    assert query_tracking(bed.control) == []
    with pytest.raises(ControlError, match="Failed to connect"):
        query_tracking(bed.control + ".nope")


def test_embed_handover_through_the_helper(bed: Bed) -> None:
    # This test process is the destination: with pid initiators its connection is its own
    # nexus (with a real device it would be the destination host's initiator).
    source, node = bed.qemu("vm1"), bed.qemu("node2")
    assert source.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    assert source.out(PrOutAction.RESERVE, rk=KEY, pr_type=int(PrType.WE_RO)) == GOOD
    assert node.out(PrOutAction.REGISTER, sark=OTHER) == GOOD
    fd = os.open(bed.image, os.O_RDWR)
    dst = helper_path(bed.helper.path, fd)
    try:
        migration = Migration(dst)
        tracked = migration.prepare(bed.control, vm="vm1")
        assert tracked.pid == source.pid
        assert (migration.key, migration.reservation_type) == (KEY, int(PrType.WE_RO))
        result = migration.switch_over()
        assert (result.key, result.type, result.method) == (KEY, 5, "reservation")
    finally:
        close_path(dst)
        os.close(fd)
    status = full_status(node)
    me = tid(f"pid:{os.getpid()}")
    assert set(status) == {me, tid(f"pid:{node.pid}")}
    assert status[me] == (KEY, True, 5)
    # The source's entry is the source QEMU's view; the handover was not a guest's command.
    entries: list[Any] = query_tracking(bed.control, pid=source.pid)
    assert [(e.key, e.type) for e in entries] == [(KEY, 5)]


def test_migrate_pr_mode_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from qompr.daemon.main import main

    assert main(["qompr-pr-helper", "--migrate-pr=always"]) == 1
    assert capsys.readouterr().err == (
        "qompr-pr-helper: invalid --migrate-pr mode 'always' (passthrough or handover)\n"
    )


@pytest.mark.parametrize("pr_type", [0, 5, 8])
def test_vm_manager_speaks_as_the_destination_qemu(bed: Bed, pr_type: int) -> None:
    # Emulated backend, pid initiators: each QEMU is its own nexus, so the VM manager (this
    # process, an allowed uid) names the destination QEMU's initiator for the handover.
    source, node = guest_registered(bed, pr_type)
    destination = bed.qemu("vm1")  # the incoming QEMU: connected, silent until it resumes
    fd = os.open(bed.image, os.O_RDWR)
    dst = helper_path(bed.helper.path, fd, initiator=f"pid:{destination.pid}")
    src = helper_path(bed.helper.path, fd, initiator=f"pid:{source.pid}")
    try:
        migration = Migration(dst, source=src)
        migration.prepare(bed.control, pid=source.pid)
        done = migration.switch_over()
        assert done.type == pr_type
        status = full_status(node)
        assert set(status) == {tid(f"pid:{destination.pid}"), tid(f"pid:{node.pid}")}
        assert status[tid(f"pid:{destination.pid}")] == (KEY, bool(pr_type), pr_type)
        # The destination's guest sees its key, and its reservation.
        keys = ReadKeysData.from_bytes(destination.read(PrInAction.READ_KEYS)).keys
        assert KEY in keys
        if pr_type:
            res = ReadReservationData.from_bytes(destination.read(PrInAction.READ_RESERVATION))
            assert res.type == pr_type
        # The migration fails after all: the source gets it back.
        back = migration.roll_back()
        assert back is not None and back.type == pr_type
        status = full_status(node)
        assert set(status) == {tid(f"pid:{source.pid}"), tid(f"pid:{node.pid}")}
        assert status[tid(f"pid:{source.pid}")] == (KEY, bool(pr_type), pr_type)
    finally:
        close_path(dst)
        close_path(src)
        os.close(fd)


def test_prepare_needs_exactly_one_entry(bed: Bed) -> None:
    first, second = bed.qemu("vm1"), bed.qemu("vm1")
    assert first.out(PrOutAction.REGISTER, sark=KEY) == GOOD
    assert second.out(PrOutAction.REGISTER, sark=OTHER) == GOOD
    unused = new_tree(load_entrypoints=False).object_add("pr-manager-emulated", "e", lu_name="x")
    migration = Migration(PRPath(unused, -1))  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="2 tracked registrations match"):
        migration.prepare(bed.control, vm="vm1")
    with pytest.raises(ControlError, match="0 tracked registrations match"):
        migration.prepare(bed.control, vm="vm2")
    assert migration.prepare(bed.control, pid=second.pid).key == OTHER
    assert migration.roll_back() is None  # never handed over: nothing to undo
