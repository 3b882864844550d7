# SPDX-License-Identifier: MIT
"""Enum values that must match the wire (docs/reference/spc4-pr.md §0-§1,
docs/reference/qemu-pr-helper.md §1, §8)."""

from __future__ import annotations

import pytest

import qompr.scsi
from qompr.scsi import HostStatus
from qompr.scsi import Opcode
from qompr.scsi import PrInAction
from qompr.scsi import ProtocolId
from qompr.scsi import PrOutAction
from qompr.scsi import PrType
from qompr.scsi import PrTypeMask
from qompr.scsi import SenseKey


def test_opcodes() -> None:
    assert Opcode(0x5E) is Opcode.PERSISTENT_RESERVE_IN
    assert Opcode(0x5F) is Opcode.PERSISTENT_RESERVE_OUT
    aliases = Opcode.__members__
    assert aliases["READ_CAPACITY"] is Opcode.READ_CAPACITY_10
    assert aliases["READ_CAPACITY_16"] is Opcode.SERVICE_ACTION_IN_16
    assert aliases["SYNCHRONIZE_CACHE"] is Opcode(0x35)
    assert aliases["MODE_SENSE"] is Opcode(0x1A)
    assert (Opcode.READ_6, Opcode.READ_10, Opcode.READ_12, Opcode.READ_16) == (8, 0x28, 0xA8, 0x88)
    assert (Opcode.WRITE_6, Opcode.WRITE_10, Opcode.WRITE_12, Opcode.WRITE_16) == (
        0x0A,
        0x2A,
        0xAA,
        0x8A,
    )
    assert Opcode.PERSISTENT_RESERVE_OUT.group == 2
    assert Opcode.READ_16.group == 4
    assert Opcode.REPORT_LUNS.group == 5


def test_service_actions() -> None:
    assert [int(a) for a in PrInAction] == [0, 1, 2, 3]
    assert [int(a) for a in PrOutAction] == list(range(9))
    assert PrOutAction(7).name == "REGISTER_AND_MOVE"


def test_pr_types() -> None:
    assert [int(t) for t in PrType] == [1, 3, 5, 6, 7, 8]
    assert PrType.__members__["WRITE_EXCLUSIVE_ALL_REGISTRANTS"] is PrType(7)
    assert PrType(7).name == "WE_AR"
    assert {t for t in PrType if t.all_registrants} == {PrType.WE_AR, PrType.EA_AR}
    assert {t for t in PrType if t.registrants_only} == {PrType.WE_RO, PrType.EA_RO}
    assert {t for t in PrType if t.exclusive_access} == {PrType.EA, PrType.EA_RO, PrType.EA_AR}
    assert PrType.EA_RO.description == "Exclusive Access, registrants only"


def test_type_mask_is_the_lio_mask_for_all_types() -> None:
    assert PrTypeMask.of(*PrType) == 0xEA01
    assert PrTypeMask(0xEA01).types == frozenset(PrType)
    assert PrTypeMask.of() == 0


def test_sense_keys_cover_every_nibble() -> None:
    assert sorted(int(k) for k in SenseKey) == list(range(16))
    assert SenseKey.ILLEGAL_REQUEST.description == "ILLEGAL REQUEST"


def test_host_status_and_protocols() -> None:
    assert int(HostStatus.TRANSPORT_DISRUPTED) == 0x0E
    assert int(HostStatus.MEDIUM_ERROR) == 0x13
    assert (ProtocolId.FCP, ProtocolId.ISCSI, ProtocolId.SAS) == (0, 5, 6)


@pytest.mark.parametrize("name", qompr.scsi.__all__)
def test_public_names_exist_and_come_from_private_modules(name: str) -> None:
    obj = getattr(qompr.scsi, name)
    module = getattr(obj, "__module__", None)
    if callable(obj):  # classes, enums and functions; not constants or type aliases
        assert module is not None
        assert module.startswith("qompr.scsi._")


def test_all_is_complete() -> None:
    public = {n for n in dir(qompr.scsi) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(qompr.scsi, n)).__name__ == "module"}
    assert set(qompr.scsi.__all__) == public - modules
