# SPDX-License-Identifier: MIT
"""PR IN parameter data (docs/reference/spc4-pr.md §1.5; §7 #1, #10, #18, #35, #70-74)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qompr.errors import ScsiError
from qompr.scsi import FullStatusDescriptor
from qompr.scsi import PrInAction
from qompr.scsi import PrScope
from qompr.scsi import PrType
from qompr.scsi import PrTypeMask
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import ReportCapabilitiesData
from qompr.scsi import TransportID
from qompr.scsi import TransportIDError
from qompr.scsi import decode_pr_in_data

from .strategies import full_status_data
from .strategies import read_keys_data
from .strategies import read_reservation_data
from .strategies import report_capabilities_data

K_A = 0xAAAA0000AAAA0001
K_B = 0xBBBB0000BBBB0002
IQN25 = "iqn.2003-01.org.linux:abc"
TID_A = TransportID.iscsi(IQN25, 0x400001370000)
TID_B = TransportID.iscsi("iqn.2003-01.org.linux:bbb", 0x400001370001)


# -- READ KEYS ------------------------------------------------------------------------------------


def test_read_keys_empty() -> None:
    # docs/reference/spc4-pr.md §7 #1: gen 0, ADDITIONAL LENGTH 0, 8 bytes.
    data = ReadKeysData(0, ())
    assert data.to_bytes() == bytes(8)
    assert ReadKeysData.from_bytes(bytes(8)) == data


def test_read_keys_vector() -> None:
    raw = ReadKeysData(3, (K_A, K_B, K_A)).to_bytes()
    assert raw[:8] == bytes.fromhex("00000003 00000018")
    assert raw[8:] == K_A.to_bytes(8, "big") + K_B.to_bytes(8, "big") + K_A.to_bytes(8, "big")


@pytest.mark.parametrize(("cut", "keys"), [(8, ()), (12, ()), (16, (K_A,)), (23, (K_A,))])
def test_read_keys_truncated(cut: int, keys: tuple[int, ...]) -> None:
    # docs/reference/spc4-pr.md §7 #70: allocation 8 gives the header only; ADDITIONAL LENGTH says
    # 16.
    raw = ReadKeysData(7, (K_A, K_B)).to_bytes()
    assert int.from_bytes(raw[4:8], "big") == 16
    assert ReadKeysData.from_bytes(raw[:cut]) == ReadKeysData(7, keys)
    with pytest.raises(ScsiError, match="truncated"):
        ReadKeysData.from_bytes(raw[:cut], strict=True)


def test_read_keys_ignores_trailing_bytes() -> None:
    raw = ReadKeysData(1, (K_A,)).to_bytes()
    assert ReadKeysData.from_bytes(raw + b"\xff" * 8, strict=True).keys == (K_A,)


@pytest.mark.parametrize(
    "raw", [b"", bytes(7), bytes.fromhex("00000000 00000004") + bytes(4)], ids=["0", "7", "len4"]
)
def test_read_keys_refuses(raw: bytes) -> None:
    with pytest.raises(ScsiError):
        ReadKeysData.from_bytes(raw)


def test_read_keys_validators() -> None:
    with pytest.raises(ValueError, match="generation"):
        ReadKeysData(2**32, ())
    with pytest.raises(ValueError, match="keys"):
        ReadKeysData(0, (2**64,))


# -- READ RESERVATION ------------------------------------------------------------------------------


def test_read_reservation_none() -> None:
    data = ReadReservationData(5)
    assert not data.has_reservation
    assert data.to_bytes() == bytes.fromhex("00000005 00000000")
    assert ReadReservationData.from_bytes(data.to_bytes()) == data


def test_read_reservation_we_vector() -> None:
    # docs/reference/spc4-pr.md §7 #18: ADDITIONAL LENGTH 16, key K_A at 8-15, byte 21 = 01h.
    data = ReadReservationData(2, type=PrType.WE, reservation_key=K_A)
    raw = data.to_bytes()
    assert len(raw) == 24
    assert raw[4:8] == bytes.fromhex("00000010")
    assert raw[8:16] == K_A.to_bytes(8, "big")
    assert raw[21] == 0x01
    assert raw[16:21] == bytes(5)
    assert raw[22:24] == bytes(2)
    decoded = ReadReservationData.from_bytes(raw)
    assert decoded == data
    assert decoded.type is PrType.WE
    assert decoded.scope is PrScope.LU_SCOPE


def test_read_reservation_all_registrants_key_zero() -> None:
    raw = bytes.fromhex("00000009 00000010") + bytes(13) + b"\x07" + bytes(2)
    data = ReadReservationData.from_bytes(raw)
    assert data.type is PrType.WE_AR
    assert data.reservation_key == 0
    assert data.has_reservation


def test_read_reservation_scope_and_odd_type() -> None:
    raw = bytearray(ReadReservationData(0, type=1).to_bytes())
    raw[21] = 0x14  # SCOPE 1 (obsolete), TYPE 4 (obsolete)
    data = ReadReservationData.from_bytes(bytes(raw))
    assert (data.scope, data.type) == (1, 4)
    assert not isinstance(data.type, PrType)
    assert data.to_bytes() == bytes(raw)


@pytest.mark.parametrize("cut", [8, 16, 21])
def test_read_reservation_truncated_before_type(cut: int) -> None:
    raw = ReadReservationData(0, type=PrType.EA, reservation_key=K_A).to_bytes()
    with pytest.raises(ScsiError, match="truncated"):
        ReadReservationData.from_bytes(raw[:cut])


def test_read_reservation_truncated_after_type() -> None:
    raw = ReadReservationData(0, type=PrType.EA, reservation_key=K_A).to_bytes()
    assert ReadReservationData.from_bytes(raw[:22]).type is PrType.EA
    with pytest.raises(ScsiError, match="truncated"):
        ReadReservationData.from_bytes(raw[:22], strict=True)


def test_read_reservation_refuses_odd_length() -> None:
    raw = bytes.fromhex("00000000 00000008") + bytes(16)
    with pytest.raises(ScsiError, match="not 0 or 16"):
        ReadReservationData.from_bytes(raw)


def test_read_reservation_validator() -> None:
    with pytest.raises(ValueError, match="need a type"):
        ReadReservationData(0, reservation_key=K_A)
    with pytest.raises(ValueError, match="type"):
        ReadReservationData(0, type=16)


# -- REPORT CAPABILITIES ---------------------------------------------------------------------------


def test_report_capabilities_lio_bytes() -> None:
    # docs/reference/spc4-pr.md §1.5 / §8 and §7 #10.
    assert ReportCapabilitiesData.lio().to_bytes() == bytes.fromhex("00 08 1d 90 ea 01 00 00")
    assert ReportCapabilitiesData.lio(ptpl_a=True).to_bytes() == bytes.fromhex(
        "00 08 1d 91 ea 01 00 00"
    )


def test_report_capabilities_decode_lio() -> None:
    caps = ReportCapabilitiesData.from_bytes(bytes.fromhex("00 08 1d 91 ea 01 00 00"))
    assert caps == ReportCapabilitiesData.lio(ptpl_a=True)
    assert (caps.crh, caps.sip_c, caps.atp_c, caps.ptpl_c, caps.rlr_c) == (
        True,
        True,
        True,
        True,
        False,
    )
    assert caps.tmv
    assert caps.allow_commands == 1
    assert caps.types == frozenset(PrType)


def test_report_capabilities_other_implementations() -> None:
    scst = ReportCapabilitiesData.from_bytes(bytes.fromhex("00 08 1d c0 ea 01 00 00"))
    assert scst.allow_commands == 4
    assert not scst.ptpl_a
    ctl = ReportCapabilitiesData.from_bytes(bytes.fromhex("00 08 10 d0 ea 01 00 00"))
    assert (ctl.crh, ctl.sip_c, ctl.allow_commands) == (True, False, 5)
    tgt = ReportCapabilitiesData.from_bytes(bytes.fromhex("00 08 00 80 ea 01 00 00"))
    assert tgt.tmv
    assert tgt.allow_commands == 0


def test_report_capabilities_mask_bits() -> None:
    caps = ReportCapabilitiesData(type_mask=PrTypeMask.of(PrType.WE, PrType.EA_AR))
    raw = caps.to_bytes()
    assert raw[4:6] == bytes.fromhex("02 01")
    assert caps.types == {PrType.WE, PrType.EA_AR}
    assert int(PrTypeMask.WR_EX_AR) == 0x8000  # byte 4, 80h


def test_report_capabilities_reserved_bits_ignored_and_six_bytes_enough() -> None:
    caps = ReportCapabilitiesData.from_bytes(bytes.fromhex("00 08 62 0e ea 01"))
    assert caps == ReportCapabilitiesData(type_mask=0xEA01)


@pytest.mark.parametrize("raw", ["", "00 08 1d 90 ea", "00 00 1d 90 ea 01 00 00"])
def test_report_capabilities_refuses(raw: str) -> None:
    with pytest.raises(ScsiError):
        ReportCapabilitiesData.from_bytes(bytes.fromhex(raw))


# -- READ FULL STATUS ------------------------------------------------------------------------------


def test_full_status_descriptor_vector() -> None:
    # docs/reference/spc4-pr.md §7 #73: byte 12 = 00h, RTPI 0001h, ADDITIONAL DESCRIPTOR LENGTH 48.
    data = ReadFullStatusData(4, (FullStatusDescriptor(K_A, TID_A, relative_target_port=1),))
    raw = data.to_bytes()
    assert raw[0:8] == bytes.fromhex("00000004 00000048")  # 24 + 48 = 72 = 48h
    desc = raw[8:]
    assert desc[0:8] == K_A.to_bytes(8, "big")
    assert desc[8:12] == bytes(4)
    assert desc[12] == 0x00
    assert desc[13] == 0x00
    assert desc[18:20] == bytes.fromhex("0001")
    assert int.from_bytes(desc[20:24], "big") == 48
    assert desc[24:28] == bytes.fromhex("45 00 00 2c")
    assert desc[28:] == (IQN25 + ",i,0x400001370000").encode().ljust(44, b"\0")
    assert ReadFullStatusData.from_bytes(raw) == data


def test_full_status_all_registrants_holders() -> None:
    # docs/reference/spc4-pr.md §7 #35 and §6: EA_AR gives R_HOLDER to every registrant; ALL_TG_PT
    # RTPI 0.
    descriptors = (
        FullStatusDescriptor(K_A, TID_A, r_holder=True, type=PrType.EA_AR, relative_target_port=1),
        FullStatusDescriptor(K_B, TID_B, all_tg_pt=True, r_holder=True, type=PrType.EA_AR),
    )
    raw = ReadFullStatusData(1, descriptors).to_bytes()
    first = raw[8:]
    second = first[24 + 48 :]
    assert (first[12], first[13]) == (0x01, 0x08)
    assert (second[12], second[13], second[18:20]) == (0x03, 0x08, b"\0\0")
    decoded = ReadFullStatusData.from_bytes(raw)
    assert decoded.descriptors[1].all_tg_pt
    assert decoded.descriptors[1].type is PrType.EA_AR


def test_full_status_truncated() -> None:
    # docs/reference/spc4-pr.md §7 #74: ADDITIONAL LENGTH counts both descriptors (SPC), data fits
    # one.
    data = ReadFullStatusData(
        0,
        (
            FullStatusDescriptor(K_A, TID_A, relative_target_port=1),
            FullStatusDescriptor(K_B, TID_B, relative_target_port=1),
        ),
    )
    raw = data.to_bytes()
    assert int.from_bytes(raw[4:8], "big") == 2 * 72
    for cut in (8, 8 + 23, 8 + 71):
        assert ReadFullStatusData.from_bytes(raw[:cut]).descriptors == ()
    for cut in (8 + 72, 8 + 72 + 24, len(raw) - 1):
        assert ReadFullStatusData.from_bytes(raw[:cut]).descriptors == data.descriptors[:1]
    with pytest.raises(ScsiError, match="truncated"):
        ReadFullStatusData.from_bytes(raw[:80], strict=True)


def test_full_status_lio_short_additional_length() -> None:
    # LIO sets ADDITIONAL LENGTH to what it wrote: consistent, complete data with one descriptor.
    one = FullStatusDescriptor(K_A, TID_A, relative_target_port=1).to_bytes()
    raw = bytes.fromhex("00000000") + len(one).to_bytes(4, "big") + one
    assert len(ReadFullStatusData.from_bytes(raw, strict=True).descriptors) == 1


def test_full_status_overrun_is_an_error() -> None:
    one = bytearray(FullStatusDescriptor(K_A, TID_A).to_bytes())
    raw = bytes.fromhex("00000000") + (len(one) - 4).to_bytes(4, "big") + bytes(one)
    with pytest.raises(ScsiError, match="overruns"):
        ReadFullStatusData.from_bytes(raw)
    raw = bytes.fromhex("00000000 00000010") + bytes(16)  # 16 bytes: not even a header
    with pytest.raises(ScsiError, match="overruns"):
        ReadFullStatusData.from_bytes(raw)


def test_full_status_bad_transport_id() -> None:
    desc = bytearray(FullStatusDescriptor(K_A, TransportID.fc(1)).to_bytes())
    desc[24] = 0x04  # SRP
    raw = bytes.fromhex("00000000") + len(desc).to_bytes(4, "big") + bytes(desc)
    with pytest.raises(TransportIDError):
        ReadFullStatusData.from_bytes(raw)


def test_full_status_transport_id_padding_is_ignored() -> None:
    desc = bytearray(FullStatusDescriptor(K_A, TransportID.fc(1)).to_bytes())
    desc[20:24] = (32).to_bytes(4, "big")
    desc += b"\xee" * 8  # padding inside the descriptor length
    raw = bytes.fromhex("00000000") + len(desc).to_bytes(4, "big") + bytes(desc)
    data = ReadFullStatusData.from_bytes(raw, strict=True)
    assert data.descriptors[0].transport_id == TransportID.fc(1)


# -- dispatch --------------------------------------------------------------------------------------


def test_decode_pr_in_data() -> None:
    assert decode_pr_in_data(PrInAction.READ_KEYS, bytes(8)) == ReadKeysData(0, ())
    assert decode_pr_in_data(PrInAction.READ_RESERVATION, bytes(8)) == ReadReservationData(0)
    caps = ReportCapabilitiesData.lio()
    assert decode_pr_in_data(PrInAction.REPORT_CAPABILITIES, caps.to_bytes()) == caps
    assert decode_pr_in_data(3, bytes(8)) == ReadFullStatusData(0, ())
    with pytest.raises(ScsiError, match="0x04"):
        decode_pr_in_data(4, bytes(8))


# -- properties ------------------------------------------------------------------------------------


@given(read_keys_data)
def test_read_keys_round_trip(data: ReadKeysData) -> None:
    raw = data.to_bytes()
    assert ReadKeysData.from_bytes(raw, strict=True) == data
    assert int.from_bytes(raw[4:8], "big") == 8 * len(data.keys)


@given(read_keys_data, st.integers(8, 200))
def test_read_keys_truncation_gives_a_prefix(data: ReadKeysData, cut: int) -> None:
    decoded = ReadKeysData.from_bytes(data.to_bytes()[:cut])
    assert decoded.generation == data.generation
    assert decoded.keys == data.keys[: (min(cut, 8 + 8 * len(data.keys)) - 8) // 8]


@given(read_reservation_data())
def test_read_reservation_round_trip(data: ReadReservationData) -> None:
    assert ReadReservationData.from_bytes(data.to_bytes(), strict=True) == data


@given(report_capabilities_data)
def test_report_capabilities_round_trip(data: ReportCapabilitiesData) -> None:
    raw = data.to_bytes()
    assert len(raw) == 8
    assert raw[:2] == b"\x00\x08"
    assert ReportCapabilitiesData.from_bytes(raw) == data


@given(full_status_data)
def test_full_status_round_trip(data: ReadFullStatusData) -> None:
    raw = data.to_bytes()
    assert ReadFullStatusData.from_bytes(raw, strict=True) == data
    assert int.from_bytes(raw[4:8], "big") == len(raw) - 8


@given(full_status_data, st.integers(8, 2000))
def test_full_status_truncation_gives_a_prefix(data: ReadFullStatusData, cut: int) -> None:
    decoded = ReadFullStatusData.from_bytes(data.to_bytes()[:cut])
    count = len(decoded.descriptors)
    assert decoded.descriptors == data.descriptors[:count]
    # Every descriptor that fits whole is returned.
    fitted = 8 + sum(len(d.to_bytes()) for d in data.descriptors[: count + 1])
    assert count == len(data.descriptors) or fitted > cut
