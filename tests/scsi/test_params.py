# SPDX-License-Identifier: MIT
"""PR OUT parameter lists (docs/reference/spc4-pr.md §1.3, §1.4, §3.0, §5)."""

from __future__ import annotations

import pytest
from hypothesis import given

from qompr.errors import ScsiError
from qompr.scsi import ParameterListError
from qompr.scsi import ParameterListLengthError
from qompr.scsi import PrOutAction
from qompr.scsi import PrOutParameters
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import SenseCode
from qompr.scsi import TransportID
from qompr.scsi import TransportIDError
from qompr.scsi import TransportIDLengthError
from qompr.scsi import decode_pr_out_parameters

from .strategies import pr_out_parameters
from .strategies import register_and_move_parameters

K_A = 0x1122334455667788
K_B = 0x0102030405060708
TID_C = TransportID.iscsi("iqn.2003-01.org.linux:ccc", 0x400001370003)


def basic(rk: int = 0, sark: int = 0, flags: int = 0) -> bytearray:
    out = bytearray(24)
    out[0:8] = rk.to_bytes(8, "big")
    out[8:16] = sark.to_bytes(8, "big")
    out[20] = flags
    return out


# -- basic list: known bytes --------------------------------------------------------------------


def test_register_vector() -> None:
    params = PrOutParameters(reservation_key=0, sa_key=K_A, aptpl=True)
    raw = params.to_bytes()
    assert raw == bytes(8) + K_A.to_bytes(8, "big") + bytes(4) + b"\x01" + bytes(3)
    assert PrOutParameters.from_bytes(raw) == params


@pytest.mark.parametrize(
    ("flags", "spec", "all_tg", "aptpl"),
    [(0x01, False, False, True), (0x04, False, True, False), (0x05, False, True, True)],
)
def test_flag_bits(flags: int, spec: bool, all_tg: bool, aptpl: bool) -> None:
    params = PrOutParameters.from_bytes(bytes(basic(K_A, K_B, flags)))
    assert (params.spec_i_pt, params.all_tg_pt, params.aptpl) == (spec, all_tg, aptpl)
    assert params.reservation_key == K_A
    assert params.sa_key == K_B


def test_obsolete_and_reserved_fields_are_ignored() -> None:
    raw = basic(K_A, K_B, 0xF2 | 0x04)  # reserved bits 7-4 and 1 of byte 20
    raw[16:20] = b"\xff\xff\xff\xff"  # obsolete
    raw[21:24] = b"\xff\xff\xff"  # reserved, obsolete
    params = PrOutParameters.from_bytes(bytes(raw))
    assert params == PrOutParameters(reservation_key=K_A, sa_key=K_B, all_tg_pt=True)


def test_spec_i_pt_list() -> None:
    tids = (TID_C, TransportID.fc(0x21000024FF000001))
    params = PrOutParameters(sa_key=K_A, spec_i_pt=True, transport_ids=tids)
    raw = params.to_bytes()
    tid_bytes = b"".join(t.to_bytes() for t in tids)
    assert raw[20] == 0x08
    assert int.from_bytes(raw[24:28], "big") == len(tid_bytes)
    assert raw[28:] == tid_bytes
    assert PrOutParameters.from_bytes(raw) == params


def test_spec_i_pt_with_empty_list_is_28_bytes() -> None:
    raw = PrOutParameters(sa_key=K_A, spec_i_pt=True).to_bytes()
    assert len(raw) == 28
    assert PrOutParameters.from_bytes(raw).transport_ids == ()


# -- basic list: length errors (docs/reference/spc4-pr.md §7 #11, #17) -----------------------------


@pytest.mark.parametrize("length", [0, 15, 16, 23])
def test_shorter_than_24_is_a_length_error(length: int) -> None:
    raw = bytes(basic(K_A, K_B))[:length]
    with pytest.raises(ParameterListLengthError) as info:
        PrOutParameters.from_bytes(raw)
    assert info.value.sense_code == SenseCode.INVALID_PARAM_LEN
    # Keys are passed on when the list held them (bytes 0-15).
    expected = (K_A, K_B) if length >= 16 else (None, None)
    assert (info.value.reservation_key, info.value.sa_key) == expected


@pytest.mark.parametrize("length", [25, 28, 32])
def test_without_spec_i_pt_exactly_24(length: int) -> None:
    raw = bytes(basic(K_A, K_B)).ljust(length, b"\0")
    with pytest.raises(ParameterListLengthError) as info:
        PrOutParameters.from_bytes(raw)
    assert info.value.sense_code == SenseCode.INVALID_PARAM_LEN
    assert info.value.reservation_key == K_A


def test_spec_i_pt_shorter_than_28() -> None:
    with pytest.raises(TransportIDLengthError) as info:
        PrOutParameters.from_bytes(bytes(basic(0, K_B, 0x08)))
    assert info.value.sense_code == SenseCode.INVALID_PARAM  # LIO's answer
    assert info.value.sa_key == K_B


def test_spec_i_pt_length_field_mismatch() -> None:
    # docs/reference/spc4-pr.md §7 #17: TRANSPORTID PARAMETER DATA LENGTH = L + 4 for a list of 28 +
    # L.
    tid = TID_C.to_bytes()
    raw = bytes(basic(0, K_B, 0x08)) + (len(tid) + 4).to_bytes(4, "big") + tid
    with pytest.raises(TransportIDLengthError) as info:
        PrOutParameters.from_bytes(raw)
    assert info.value.sense_code == SenseCode.INVALID_PARAM
    assert (info.value.reservation_key, info.value.sa_key) == (0, K_B)
    assert not isinstance(info.value, ParameterListLengthError)


def test_spec_i_pt_bad_transport_id_keeps_keys() -> None:
    raw = bytes(basic(K_A, K_B, 0x08)) + (24).to_bytes(4, "big") + b"\x04" + bytes(23)
    with pytest.raises(TransportIDError) as info:
        PrOutParameters.from_bytes(raw)
    assert type(info.value) is TransportIDError
    assert info.value.sense_code == SenseCode.INVALID_PARAM
    assert (info.value.reservation_key, info.value.sa_key) == (K_A, K_B)


def test_error_hierarchy() -> None:
    assert issubclass(ParameterListLengthError, ParameterListError)
    assert issubclass(TransportIDLengthError, TransportIDError)
    assert issubclass(TransportIDError, ParameterListError)
    assert issubclass(ParameterListError, ScsiError)
    assert issubclass(ParameterListError, ValueError)
    assert not issubclass(TransportIDLengthError, ParameterListLengthError)


def test_validators() -> None:
    with pytest.raises(ValueError, match="spec_i_pt"):
        PrOutParameters(transport_ids=(TID_C,))
    with pytest.raises(ValueError, match="reservation_key"):
        PrOutParameters(reservation_key=2**64)
    with pytest.raises(TypeError, match="aptpl"):
        PrOutParameters(aptpl=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TransportID"):
        PrOutParameters(spec_i_pt=True, transport_ids=(b"x",))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PrOutParameters(0, K_A)  # type: ignore[call-arg]  # keyword-only


# -- REGISTER AND MOVE ----------------------------------------------------------------------------


def test_register_and_move_vector() -> None:
    # docs/reference/spc4-pr.md §7 #65: UNREG=1 is byte 17 = 02h; RTPI at 18-19; TransportID length
    # at 20-23.
    params = RegisterAndMoveParameters(
        reservation_key=K_A, sa_key=K_B, unreg=True, relative_target_port=1, transport_id=TID_C
    )
    raw = params.to_bytes()
    tid = TID_C.to_bytes()
    assert raw[0:16] == K_A.to_bytes(8, "big") + K_B.to_bytes(8, "big")
    assert raw[16:20] == bytes.fromhex("00 02 00 01")
    assert raw[20:24] == len(tid).to_bytes(4, "big")
    assert raw[24:] == tid
    assert RegisterAndMoveParameters.from_bytes(raw) == params


def test_register_and_move_flags_are_in_byte_17_not_20() -> None:
    raw = bytearray(
        RegisterAndMoveParameters(sa_key=K_B, aptpl=True, transport_id=TID_C).to_bytes()
    )
    assert raw[17] == 0x01
    params = RegisterAndMoveParameters.from_bytes(bytes(raw))
    assert params.aptpl
    assert not params.unreg


def test_register_and_move_tid_padding() -> None:
    tid = TransportID.fc(1).to_bytes() + bytes(8)  # padded region, SPC-5 allows ≥ 24
    raw = bytes(20) + len(tid).to_bytes(4, "big") + tid
    assert RegisterAndMoveParameters.from_bytes(raw).transport_id == TransportID.fc(1)
    bad = bytes(20) + len(tid).to_bytes(4, "big") + tid[:-1] + b"\x01"
    with pytest.raises(TransportIDError):
        RegisterAndMoveParameters.from_bytes(bad)


def test_register_and_move_errors() -> None:
    with pytest.raises(ParameterListLengthError):
        RegisterAndMoveParameters.from_bytes(bytes(23))
    good = RegisterAndMoveParameters(reservation_key=K_A, sa_key=K_B, transport_id=TID_C)
    raw = good.to_bytes()
    with pytest.raises(TransportIDLengthError) as info:
        RegisterAndMoveParameters.from_bytes(raw + bytes(4))
    assert info.value.sense_code == SenseCode.INVALID_PARAM
    assert (info.value.reservation_key, info.value.sa_key) == (K_A, K_B)
    with pytest.raises(TransportIDError, match="missing"):
        RegisterAndMoveParameters.from_bytes(bytes(24))  # length 0, no TransportID


# -- dispatch in LIO's order -----------------------------------------------------------------------


def test_dispatch() -> None:
    move = RegisterAndMoveParameters(transport_id=TID_C, sa_key=K_B)
    assert decode_pr_out_parameters(PrOutAction.REGISTER_AND_MOVE, move.to_bytes()) == move
    assert decode_pr_out_parameters(9, bytes(24)) == PrOutParameters()
    spec = PrOutParameters(sa_key=K_A, spec_i_pt=True, transport_ids=(TID_C,))
    assert decode_pr_out_parameters(PrOutAction.REGISTER, spec.to_bytes()) == spec


@pytest.mark.parametrize(
    "action",
    [
        PrOutAction.RESERVE,
        PrOutAction.RELEASE,
        PrOutAction.CLEAR,
        PrOutAction.PREEMPT,
        PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
        0x09,
    ],
)
@pytest.mark.parametrize("length", [24, 28])
def test_spec_i_pt_only_with_register(action: int, length: int) -> None:
    # docs/reference/spc4-pr.md §7 #12 / §3.0 step 6: SPEC_I_PT with anything but REGISTER is 26/00.
    raw = bytes(basic(K_A, 0, 0x08)).ljust(length, b"\0")
    with pytest.raises(ParameterListError) as info:
        decode_pr_out_parameters(action, raw)
    assert type(info.value) is ParameterListError
    assert info.value.sense_code == SenseCode.INVALID_PARAM
    assert info.value.reservation_key == K_A


def test_dispatch_length_before_spec_i_pt() -> None:
    with pytest.raises(ParameterListLengthError):
        decode_pr_out_parameters(PrOutAction.RESERVE, bytes(23))


# -- round trips -----------------------------------------------------------------------------------


@given(pr_out_parameters())
def test_basic_round_trip(params: PrOutParameters) -> None:
    raw = params.to_bytes()
    assert PrOutParameters.from_bytes(raw) == params
    assert len(raw) == (24 if not params.spec_i_pt else 28 + int.from_bytes(raw[24:28], "big"))


@given(register_and_move_parameters)
def test_register_and_move_round_trip(params: RegisterAndMoveParameters) -> None:
    assert RegisterAndMoveParameters.from_bytes(params.to_bytes()) == params
    assert decode_pr_out_parameters(PrOutAction.REGISTER_AND_MOVE, params.to_bytes()) == params
