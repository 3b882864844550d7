# SPDX-License-Identifier: MIT
"""TransportIDs for FC, SAS and iSCSI (docs/reference/spc4-pr.md §1.6)."""

from __future__ import annotations

import pytest
from hypothesis import given

from qompr.errors import ScsiError
from qompr.scsi import ParameterListError
from qompr.scsi import ProtocolId
from qompr.scsi import SenseCode
from qompr.scsi import TransportID
from qompr.scsi import TransportIDError

from .strategies import transport_ids

IQN25 = "iqn.2003-01.org.linux:abc"  # 25 characters, as in docs/reference/spc4-pr.md §7 #73
WWPN = 0x21000024FF000001
SAS = 0x5000C50012345678


# -- known bytes ------------------------------------------------------------------------------


def test_iscsi_port_id_as_lio_writes_it() -> None:
    # docs/reference/spc4-pr.md §1.6 and §7 #73: 25 + 5 + 12 + 1 = 43, padded to 44; 48 bytes in
    # total.
    assert len(IQN25) == 25
    tid = TransportID.iscsi(IQN25, 0x400001370000)
    raw = tid.to_bytes()
    assert len(raw) == 48
    assert raw[:4] == bytes.fromhex("45 00 00 2c")
    assert raw[4:] == (IQN25 + ",i,0x400001370000").encode() + bytes(44 - 42)
    assert TransportID.from_bytes(raw) == tid
    assert tid.format_code == 1


def test_fc_layout() -> None:
    raw = TransportID.fc(WWPN).to_bytes()
    assert raw == bytes(8) + WWPN.to_bytes(8, "big") + bytes(8)


def test_sas_layout() -> None:
    raw = TransportID.sas(SAS).to_bytes()
    assert raw == b"\x06" + bytes(3) + SAS.to_bytes(8, "big") + bytes(12)


@pytest.mark.parametrize(
    ("name", "additional"),
    [("iqn.x", 20), ("a" * 18, 20), ("a" * 19, 20), ("a" * 20, 24), ("a" * 23, 24)],
)
def test_iscsi_name_padding_spc(name: str, additional: int) -> None:
    # Format 00: name + NUL, padded to a multiple of 4 and at least 20 (SPC-4).
    raw = TransportID.iscsi(name).to_bytes()
    assert raw[0] == 0x05
    assert int.from_bytes(raw[2:4], "big") == additional
    assert len(raw) == additional + 4
    assert raw[4 : 4 + len(name) + 1] == name.encode() + b"\0"
    assert not any(raw[4 + len(name) :])


def test_decode_lio_short_padding() -> None:
    # LIO pads only to a multiple of 4 (no minimum of 20): accepted when decoding.
    raw = b"\x05\x00\x00\x08" + b"iqn.ab\0\0"
    tid, size = TransportID.decode(raw)
    assert tid == TransportID.iscsi("iqn.ab")
    assert size == 12


def test_decode_upper_case_isid_and_reserved_bits() -> None:
    body = b"iqn.x,i,0xABCDEF012345\0"
    raw = bytes((0x75, 0, 0, 24)) + body.ljust(24, b"\0")  # bits 5-4 of byte 0 set
    tid = TransportID.from_bytes(raw)
    assert tid == TransportID.iscsi("iqn.x", 0xABCDEF012345)
    assert tid.to_bytes()[4:27] == b"iqn.x,i,0xabcdef012345\0"  # lower case, as LIO


def test_decode_returns_consumed_length_and_offset() -> None:
    fc, sas = TransportID.fc(WWPN), TransportID.sas(SAS)
    data = b"junk" + fc.to_bytes() + sas.to_bytes()
    assert TransportID.decode(data, 4) == (fc, 24)
    assert TransportID.decode(data, 28) == (sas, 24)


def test_decode_list() -> None:
    tids = (TransportID.fc(WWPN), TransportID.iscsi(IQN25, 1), TransportID.sas(SAS))
    data = b"".join(t.to_bytes() for t in tids)
    assert TransportID.decode_list(data) == tids
    assert TransportID.decode_list(b"") == ()
    with pytest.raises(TransportIDError, match="cut off"):
        TransportID.decode_list(data[:-1])


def test_from_bytes_allows_only_zero_padding() -> None:
    raw = TransportID.fc(WWPN).to_bytes()
    assert TransportID.from_bytes(raw + bytes(8)) == TransportID.fc(WWPN)
    with pytest.raises(TransportIDError, match="non-zero"):
        TransportID.from_bytes(raw + b"\x01")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "missing"),
        (b"\x04" + bytes(23), "SRP"),  # protocol not supported here
        (b"\x0c" + bytes(23), "0xc"),  # unassigned protocol id
        (b"\x40" + bytes(23), "format code"),  # FC with format 01
        (b"\x46" + bytes(23), "format code"),  # SAS with format 01
        (b"\x00" + bytes(22), "cut off"),  # FC, 23 bytes
        (b"\x85\x00\x00\x14" + b"iqn.x\0".ljust(20, b"\0"), "format code"),  # iSCSI format 10
        (b"\x05\x00", "cut off"),
        (b"\x05\x00\x00\x00", "multiple of 4"),
        (b"\x05\x00\x00\x15" + b"iqn.x\0".ljust(21, b"\0"), "multiple of 4"),
        (b"\x05\x00\x00\x14" + b"iqn.x\0", "cut off"),
        (b"\x05\x00\x00\x08" + b"iqn.abcd", "NUL"),
        (b"\x05\x00\x00\x08" + b"\0" * 8, "non-empty"),
        (b"\x05\x00\x00\x08" + b"iqn.\xff\0\0\0", "UTF-8"),
        (b"\x45\x00\x00\x08" + b"iqn.x\0\0\0", ",i,0x"),
        (b"\x45\x00\x00\x14" + b"iqn.x,i,0x12345\0".ljust(20, b"\0"), "12 hex"),
        (b"\x45\x00\x00\x18" + b"iqn.x,i,0x12345678901g\0".ljust(24, b"\0"), "12 hex"),
        (b"\x45\x00\x00\x18" + b",i,0x123456789012\0".ljust(24, b"\0"), "non-empty"),
    ],
)
def test_decode_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(TransportIDError, match=message) as info:
        TransportID.from_bytes(raw)
    # A bad TransportID in a PR OUT list is INVALID FIELD IN PARAMETER LIST.
    assert info.value.sense_code == SenseCode.INVALID_PARAM
    assert isinstance(info.value, ParameterListError)
    assert isinstance(info.value, ScsiError)


# -- constructors, validators and text ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["0x21000024ff000001", "21:00:00:24:ff:00:00:01", "21000024FF000001", "naa.21000024ff000001"],
)
def test_fc_from_text(text: str) -> None:
    assert TransportID.fc(text) == TransportID.fc(WWPN)


@pytest.mark.parametrize("text", ["", "0x123", "21:00:00:24:ff:00:00:01:02", "xyz"])
def test_wwn_text_refused(text: str) -> None:
    with pytest.raises(ValueError, match="16 hexadecimal"):
        TransportID.sas(text)


def test_isid_from_text() -> None:
    assert TransportID.iscsi(IQN25, "0x400001370000").isid == 0x400001370000
    assert TransportID.iscsi(IQN25, "400001370000").isid == 0x400001370000
    with pytest.raises(ValueError, match="12 hexadecimal"):
        TransportID.iscsi(IQN25, "4000")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"protocol": ProtocolId.FCP}, TypeError),
        ({"protocol": ProtocolId.FCP, "address": 2**64}, ValueError),
        ({"protocol": ProtocolId.SAS, "address": 1, "iscsi_name": "x"}, ValueError),
        ({"protocol": ProtocolId.ISCSI}, TypeError),
        ({"protocol": ProtocolId.ISCSI, "iscsi_name": ""}, ValueError),
        ({"protocol": ProtocolId.ISCSI, "iscsi_name": "a\0b"}, ValueError),
        ({"protocol": ProtocolId.ISCSI, "iscsi_name": "a" * 224}, ValueError),
        ({"protocol": ProtocolId.ISCSI, "iscsi_name": "é" * 112}, ValueError),  # 224 bytes
        ({"protocol": ProtocolId.ISCSI, "iscsi_name": "x", "address": 1}, ValueError),
        ({"protocol": ProtocolId.ISCSI, "iscsi_name": "x", "isid": 2**48}, ValueError),
        ({"protocol": ProtocolId.ISCSI, "iscsi_name": "a,i,0xb", "isid": 1}, ValueError),
        ({"protocol": ProtocolId.SRP, "address": 1}, ValueError),
    ],
)
def test_validators(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        TransportID(**kwargs)  # type: ignore[arg-type]


def test_iscsi_name_of_223_bytes_is_the_maximum() -> None:
    tid = TransportID.iscsi("a" * 223, 0)
    assert len(tid.to_bytes()) == 4 + 244
    assert TransportID.from_bytes(tid.to_bytes()) == tid


def test_device_name_form_may_contain_separator() -> None:
    tid = TransportID.iscsi("a,i,0xb")
    assert TransportID.from_bytes(tid.to_bytes()) == tid


def test_str_like_sg_persist() -> None:
    assert str(TransportID.fc(WWPN)) == "FCP-2 World Wide Name: 0x21000024ff000001"
    assert str(TransportID.sas(SAS)) == "SAS address: 0x5000c50012345678"
    assert str(TransportID.iscsi(IQN25)) == f"iSCSI name: {IQN25}"
    assert str(TransportID.iscsi(IQN25, 0x400001370000)) == (
        f"iSCSI world wide unique port id: {IQN25},i,0x400001370000"
    )


def test_without_isid() -> None:
    port = TransportID.iscsi(IQN25, 7)
    assert port.without_isid() == TransportID.iscsi(IQN25)
    assert port.without_isid().format_code == 0
    assert TransportID.fc(WWPN).without_isid() == TransportID.fc(WWPN)


# -- properties ---------------------------------------------------------------------------------


@given(transport_ids)
def test_round_trip(tid: TransportID) -> None:
    raw = tid.to_bytes()
    assert TransportID.from_bytes(raw) == tid
    assert TransportID.decode(raw + b"\xff") == (tid, len(raw))


@given(transport_ids)
def test_encoding_rules(tid: TransportID) -> None:
    raw = tid.to_bytes()
    assert raw[0] & 0x0F == tid.protocol
    assert raw[0] >> 6 == tid.format_code
    if tid.protocol == ProtocolId.ISCSI:
        additional = int.from_bytes(raw[2:4], "big")
        assert additional >= 20
        assert additional % 4 == 0
        assert len(raw) == additional + 4
        assert raw[-1] == 0  # NUL-terminated
    else:
        assert len(raw) == 24
