# SPDX-License-Identifier: MIT
"""The kit's CDB builders decode as what they claim to be."""

from __future__ import annotations

from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import PrType
from qompr.scsi import TransportID
from qompr.testing import HELPER_CDB_SIZE
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import pr_out_command


def test_pr_in_is_a_padded_16_byte_cdb() -> None:
    cdb = pr_in(alloc=0x1234, action=PrInAction.READ_RESERVATION)
    assert len(cdb) == HELPER_CDB_SIZE == 16
    assert cdb[10:] == bytes(6)
    decoded = PrInCdb.from_bytes(cdb[:10])
    assert decoded.service_action == PrInAction.READ_RESERVATION
    assert decoded.allocation_length == 0x1234


def test_pr_out_carries_the_length_it_is_given() -> None:
    cdb = pr_out(length=7, action=PrOutAction.RESERVE, type_=PrType.EXCLUSIVE_ACCESS)
    assert len(cdb) == 16
    decoded = PrOutCdb.from_bytes(cdb[:10])
    assert decoded.service_action == PrOutAction.RESERVE
    assert decoded.type == PrType.EXCLUSIVE_ACCESS
    assert decoded.parameter_list_length == 7


def test_pr_out_command_is_consistent() -> None:
    tid = TransportID.iscsi("iqn.2026-01.org.example:b")
    cdb, data = pr_out_command(
        PrOutAction.REGISTER, rk=1, sark=0xABC, aptpl=True, transport_ids=[tid]
    )
    decoded = PrOutCdb.from_bytes(cdb)
    assert decoded.parameter_list_length == len(data)
    params = PrOutParameters.from_bytes(data)
    assert (params.reservation_key, params.sa_key) == (1, 0xABC)
    assert params.aptpl and params.spec_i_pt
    assert params.transport_ids == (tid,)
