# SPDX-License-Identifier: MIT
"""ManagerTarget: several initiators on one logical unit behind a pr-manager."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import ReadKeysData
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.testing import MANAGER_OPCODES
from qompr.testing import ManagerTarget
from qompr.testing import UnsupportedCommandError
from qompr.testing import iscsi_nexus
from qompr.testing import pr_out_command

READ_KEYS = PrInCdb(PrInAction.READ_KEYS, 8192).to_bytes()
READ_10 = bytes((0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0))


@pytest.fixture
def target(tree: ObjectTree, tmp_path: Path) -> Iterator[ManagerTarget]:
    manager = tree.object_add("pr-manager-emulated", "emu", target_ports=2)
    assert isinstance(manager, PRManagerEmulated)
    lu = tmp_path / "lu.img"
    lu.write_bytes(bytes(4096))
    fd = os.open(lu, os.O_RDWR)
    try:
        yield ManagerTarget(manager, fd, ("A", "B"), ports=2)
    finally:
        os.close(fd)


def keys(target: ManagerTarget, initiator: str) -> tuple[int, ...]:
    result = target.command(initiator, 1, READ_KEYS)
    assert result.status == ScsiStatus.GOOD
    return ReadKeysData.from_bytes(result.data).keys


def test_initiators_are_distinct_nexuses_of_one_logical_unit(target: ManagerTarget) -> None:
    assert target.command("A", 1, *pr_out_command(PrOutAction.REGISTER, sark=0xA)).ok
    assert target.command("B", 2, *pr_out_command(PrOutAction.REGISTER, sark=0xB)).ok
    assert keys(target, "A") == keys(target, "B") == (0xA, 0xB)
    # Each nexus has its own registration: B's key is not A's.
    again = target.command("B", 2, *pr_out_command(PrOutAction.REGISTER, rk=0xA, sark=0xC))
    assert again.status == ScsiStatus.RESERVATION_CONFLICT


def test_test_unit_ready_reaches_the_manager(target: ManagerTarget) -> None:
    target.command("A", 1, *pr_out_command(PrOutAction.REGISTER, sark=0xA))
    target.command("B", 1, *pr_out_command(PrOutAction.REGISTER, sark=0xB))
    preempt = pr_out_command(PrOutAction.PREEMPT, rk=0xB, sark=0xA, pr_type=PrType.WRITE_EXCLUSIVE)
    assert target.command("B", 1, *preempt).ok
    tur = target.command("A", 1, bytes(6))
    assert tur.sense_code == SenseCode.REGISTRATIONS_PREEMPTED
    assert target.command("A", 1, bytes(6)).ok  # reported, so cleared


def test_other_commands_do_not_reach_a_pr_manager(target: ManagerTarget) -> None:
    assert READ_10[0] not in MANAGER_OPCODES
    with pytest.raises(UnsupportedCommandError, match="cannot carry opcode 28h"):
        target.command("A", 1, READ_10)


def test_names_and_transport_ids(target: ManagerTarget) -> None:
    assert target.nexus("B", 2) == iscsi_nexus("B", 1, 2)
    assert target.initiator_of(target.transport_id("B")) == "B"
    assert target.rtpi(2, "A") == 2
    with pytest.raises(KeyError):
        target.nexus("A", 3)
