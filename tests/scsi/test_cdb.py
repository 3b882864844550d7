# SPDX-License-Identifier: MIT
"""PERSISTENT RESERVE IN/OUT CDBs and QEMU's transfer-length rule (docs/reference/spc4-pr.md §1.1,
§1.2)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qompr.errors import ScsiError
from qompr.scsi import CdbError
from qompr.scsi import PrInAction
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutCdb
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import SenseCode
from qompr.scsi import transfer_length

from .strategies import pr_in_cdbs
from .strategies import pr_out_cdbs

# -- PERSISTENT RESERVE IN -----------------------------------------------------------------


def test_prin_read_keys_vector() -> None:
    cdb = PrInCdb(PrInAction.READ_KEYS, 0x2000)
    assert cdb.to_bytes() == bytes.fromhex("5e 00 00 00 00 00 00 20 00 00")
    assert PrInCdb.from_bytes(cdb.to_bytes()) == cdb


def test_prin_decodes_fields() -> None:
    cdb = PrInCdb.from_bytes(bytes.fromhex("5e 03 00 00 00 00 00 ff fe 04"))
    assert cdb.service_action is PrInAction.READ_FULL_STATUS
    assert cdb.allocation_length == 0xFFFE
    assert cdb.control == 0x04
    assert cdb.reserved == 0
    assert not cdb.has_reserved_bits
    assert cdb.transfer_length == 0xFFFE


@pytest.mark.parametrize("action", range(4, 32))
def test_prin_reserved_service_action_is_a_plain_int(action: int) -> None:
    # 04h-1Fh are reserved: decoded as data, the engine answers 24/00 (docs/reference/spc4-pr.md
    # §1.1).
    cdb = PrInCdb.from_bytes(bytes((0x5E, action, 0, 0, 0, 0, 0, 0, 8, 0)))
    assert cdb.service_action == action
    assert not isinstance(cdb.service_action, PrInAction)


def test_prin_reserved_bits_are_reported_and_kept() -> None:
    raw = bytes.fromhex("5e e2 00 01 00 00 80 00 08 00")  # byte 1 bits 7-5, byte 3, byte 6
    cdb = PrInCdb.from_bytes(raw)
    assert cdb.service_action is PrInAction.REPORT_CAPABILITIES
    assert cdb.has_reserved_bits
    assert cdb.reserved == 0xE0_00_01_00_00_80
    assert cdb.to_bytes() == raw


def test_prin_helper_buffer_of_16_bytes() -> None:
    raw = bytes.fromhex("5e 01 00 00 00 00 00 00 18 00") + bytes(6)
    cdb = PrInCdb.from_bytes(raw)
    assert cdb == PrInCdb(PrInAction.READ_RESERVATION, 24)
    assert cdb.to_bytes(size=16) == raw


@pytest.mark.parametrize("length", [11, 12, 15, 16])
def test_prin_accepts_any_zero_padding_up_to_16(length: int) -> None:
    raw = bytes.fromhex("5e 00 00 00 00 00 00 00 08 00").ljust(length, b"\0")
    assert PrInCdb.from_bytes(raw).allocation_length == 8


@pytest.mark.parametrize(
    ("raw", "sense"),
    [
        (b"", SenseCode.INVALID_FIELD),
        (bytes.fromhex("5f 00 00 00 00 00 00 00 08 00"), SenseCode.INVALID_OPCODE),
        (bytes.fromhex("12 00 00 00 60 00"), SenseCode.INVALID_OPCODE),
        (bytes.fromhex("5e 00 00 00 00 00 00 00 08"), SenseCode.INVALID_FIELD),
        (
            bytes.fromhex("5e 00 00 00 00 00 00 00 08 00 00 00 01") + bytes(3),
            SenseCode.INVALID_FIELD,
        ),
        (bytes.fromhex("5e 00 00 00 00 00 00 00 08 00") + bytes(7), SenseCode.INVALID_FIELD),
    ],
    ids=["empty", "pr-out-opcode", "inquiry", "9-bytes", "junk-padding", "17-bytes"],
)
def test_prin_not_a_cdb(raw: bytes, sense: SenseCode) -> None:
    with pytest.raises(CdbError) as info:
        PrInCdb.from_bytes(raw)
    assert info.value.sense_code == sense
    assert isinstance(info.value, ScsiError)


def test_prin_validators() -> None:
    with pytest.raises(ValueError, match="service_action"):
        PrInCdb(32, 0)
    with pytest.raises(ValueError, match="allocation_length"):
        PrInCdb(0, 0x10000)
    with pytest.raises(ValueError, match="reserved"):
        PrInCdb(0, 0, reserved=0x1F_00_00_00_00_00)  # the SERVICE ACTION bits
    with pytest.raises(TypeError):
        PrInCdb(0, 0, 0)  # type: ignore[call-arg]  # control is keyword-only
    with pytest.raises(ValueError, match="size"):
        PrInCdb(0, 0).to_bytes(size=17)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        PrInCdb(0, 0).allocation_length = 1  # type: ignore[misc]


# -- PERSISTENT RESERVE OUT ----------------------------------------------------------------


def test_prout_register_vector() -> None:
    cdb = PrOutCdb(PrOutAction.REGISTER, PrScope.LU_SCOPE, 0, 24)
    assert cdb.to_bytes() == bytes.fromhex("5f 00 00 00 00 00 00 00 18 00")


def test_prout_reserve_vector() -> None:
    cdb = PrOutCdb.from_bytes(bytes.fromhex("5f 01 05 00 00 00 00 00 18 00"))
    assert cdb.service_action is PrOutAction.RESERVE
    assert cdb.scope is PrScope.LU_SCOPE
    assert cdb.type is PrType.WE_RO
    assert cdb.parameter_list_length == 24


def test_prout_scope_and_type_nibbles_are_not_swapped() -> None:
    # docs/reference/spc4-pr.md §7 #16: RESERVE SCOPE=1 TYPE=1; LIO reads SCOPE unshifted, same
    # effect.
    cdb = PrOutCdb.from_bytes(bytes.fromhex("5f 01 13 00 00 00 00 00 18 00"))
    assert cdb.scope == 1
    assert cdb.type is PrType.EA
    assert PrOutCdb(1, 1, 3, 24).to_bytes()[2] == 0x13


@pytest.mark.parametrize("pr_type", [0, 2, 4, 9, 15])
def test_prout_obsolete_and_reserved_types_are_plain_ints(pr_type: int) -> None:
    cdb = PrOutCdb.from_bytes(bytes((0x5F, 1, pr_type, 0, 0, 0, 0, 0, 24, 0)))
    assert cdb.type == pr_type
    assert not isinstance(cdb.type, PrType)


@pytest.mark.parametrize("action", [8, 9, 0x1F])
def test_prout_high_service_actions(action: int) -> None:
    cdb = PrOutCdb.from_bytes(bytes((0x5F, action, 0, 0, 0, 0, 0, 0, 24, 0)))
    assert cdb.service_action == action
    # 08h is REPLACE LOST RESERVATION (a member); 09h-1Fh are reserved.
    assert isinstance(cdb.service_action, PrOutAction) == (action == 8)


def test_prout_parameter_list_length_is_32_bits_but_qemu_moves_16() -> None:
    raw = bytes.fromhex("5f 00 00 00 00 00 01 00 18 00")
    cdb = PrOutCdb.from_bytes(raw)
    assert cdb.parameter_list_length == 0x10018
    assert cdb.transfer_length == 0x18  # docs/reference/qemu-pr-helper.md §5: bytes 7-8 only
    assert transfer_length(raw) == cdb.transfer_length


def test_prout_reserved_bits() -> None:
    raw = bytes.fromhex("5f 20 00 ff 01 00 00 00 18 00")
    cdb = PrOutCdb.from_bytes(raw)
    assert cdb.reserved == 0x20_00_FF_01
    assert cdb.has_reserved_bits
    assert cdb.to_bytes() == raw
    with pytest.raises(ValueError, match="reserved"):
        PrOutCdb(0, 0, 0, 24, reserved=0x00_0F_00_00)  # the TYPE bits are not reserved


def test_prout_helper_buffer() -> None:
    raw = bytes.fromhex("5f 04 03 00 00 00 00 00 18 00") + bytes(6)
    cdb = PrOutCdb.from_bytes(raw)
    assert cdb == PrOutCdb(PrOutAction.PREEMPT, 0, PrType.EA, 24)
    assert cdb.to_bytes(size=16) == raw


def test_prout_not_a_cdb() -> None:
    with pytest.raises(CdbError) as info:
        PrOutCdb.from_bytes(bytes.fromhex("5e 00 00 00 00 00 00 00 18 00"))
    assert info.value.sense_code == SenseCode.INVALID_OPCODE
    with pytest.raises(CdbError) as info:
        PrOutCdb.from_bytes(bytes.fromhex("5f 00 00 00 00 00 00 00 18"))
    assert info.value.sense_code == SenseCode.INVALID_FIELD


def test_prout_validators() -> None:
    with pytest.raises(ValueError, match="scope"):
        PrOutCdb(0, 16, 0, 24)
    with pytest.raises(ValueError, match="type"):
        PrOutCdb(0, 0, 16, 24)
    with pytest.raises(ValueError, match="parameter_list_length"):
        PrOutCdb(0, 0, 0, 2**32)
    with pytest.raises(TypeError):
        PrOutCdb(0, 0, 0, True)


# -- round trips -----------------------------------------------------------------------------


@given(pr_in_cdbs)
def test_prin_round_trip(cdb: PrInCdb) -> None:
    assert PrInCdb.from_bytes(cdb.to_bytes()) == cdb
    assert PrInCdb.from_bytes(cdb.to_bytes(size=16)) == cdb
    assert transfer_length(cdb.to_bytes()) == cdb.transfer_length


@given(pr_out_cdbs)
def test_prout_round_trip(cdb: PrOutCdb) -> None:
    assert PrOutCdb.from_bytes(cdb.to_bytes()) == cdb
    assert PrOutCdb.from_bytes(cdb.to_bytes(size=16)) == cdb
    assert transfer_length(cdb.to_bytes(size=16)) == cdb.transfer_length


@given(st.binary(min_size=9, max_size=9))
def test_prin_decoding_is_lossless(rest: bytes) -> None:
    raw = b"\x5e" + rest
    assert PrInCdb.from_bytes(raw).to_bytes() == raw


@given(st.binary(min_size=9, max_size=9))
def test_prout_decoding_is_lossless(rest: bytes) -> None:
    raw = b"\x5f" + rest
    assert PrOutCdb.from_bytes(raw).to_bytes() == raw


# -- transfer_length (QEMU scsi_cdb_xfer) ---------------------------------------------------


@pytest.mark.parametrize(
    ("cdb", "expected"),
    [
        ("00 00 00 00 00 00", 0),  # TEST UNIT READY, group 0
        ("12 00 00 00 60 00", 0x60),  # INQUIRY, group 0: byte 4
        ("08 00 00 00 00 00", 0),  # READ(6) length 0 stays 0 (no 256 rule)
        ("28 00 00 00 00 10 00 01 02 00", 0x0102),  # READ(10), group 1: bytes 7-8
        ("5e 00 00 00 00 00 00 20 00 00", 0x2000),  # PR IN, group 2
        ("5f 00 00 00 00 ff ff 00 18 00", 0x18),  # PR OUT: bytes 5-6 ignored
        ("88 00 00 00 00 00 00 00 00 00 01 02 03 04 00 00", 0x01020304),  # READ(16): 10-13
        ("a8 00 00 00 00 00 0a 0b 0c 0d 00 00", 0x0A0B0C0D),  # READ(12), group 5: 6-9
        ("7f 00 00 00 00 00 00 18 00 00", -1),  # group 3 (variable length)
        ("c0 00 00 00 00 00", -1),  # group 6 (vendor)
        ("ff 00 00 00 00 00", -1),  # group 7 (vendor; the in-flight cleanup opcode)
        ("28", 0),  # short CDB: bytes beyond the end read as zero
        ("a8 00 00 00 00 00 ff ff ff ff", 0xFFFFFFFF),  # unsigned, not -1
    ],
)
def test_transfer_length(cdb: str, expected: int) -> None:
    assert transfer_length(bytes.fromhex(cdb)) == expected


def test_transfer_length_empty() -> None:
    with pytest.raises(CdbError):
        transfer_length(b"")


@given(st.binary(min_size=1, max_size=32))
def test_transfer_length_by_group(cdb: bytes) -> None:
    group = cdb[0] >> 5
    result = transfer_length(cdb)
    if group in (3, 6, 7):
        assert result == -1
    elif group == 0:
        assert 0 <= result <= 0xFF
    elif group in (1, 2):
        assert 0 <= result <= 0xFFFF
    else:
        assert 0 <= result <= 0xFFFFFFFF
