# SPDX-License-Identifier: MIT
"""Hostile bytes: every decoder raises nothing but ScsiError, and what it accepts re-encodes.

Two sources of input: arbitrary bytes, and valid encodings with bytes flipped, cut or added
(which reach far deeper into each decoder than random bytes do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from qompr.errors import ScsiError
from qompr.scsi import PrInCdb
from qompr.scsi import PrOutCdb
from qompr.scsi import PrOutParameters
from qompr.scsi import ReadFullStatusData
from qompr.scsi import ReadKeysData
from qompr.scsi import ReadReservationData
from qompr.scsi import RegisterAndMoveParameters
from qompr.scsi import ReportCapabilitiesData
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseData
from qompr.scsi import TransportID
from qompr.scsi import decode_pr_in_data
from qompr.scsi import decode_pr_out_parameters
from qompr.scsi import transfer_length

from . import strategies as s

# Each codec: its decoder and a strategy of valid encodings to mutate.
CODECS: dict[str, tuple[Callable[[bytes], Any], st.SearchStrategy[bytes]]] = {
    "PrInCdb": (PrInCdb.from_bytes, s.pr_in_cdbs.map(lambda v: v.to_bytes(size=16))),
    "PrOutCdb": (PrOutCdb.from_bytes, s.pr_out_cdbs.map(lambda v: v.to_bytes())),
    "SenseData": (SenseData.from_bytes, s.sense_data.map(lambda v: v.to_bytes())),
    "TransportID": (TransportID.from_bytes, s.transport_ids.map(lambda v: v.to_bytes())),
    "PrOutParameters": (
        PrOutParameters.from_bytes,
        s.pr_out_parameters().map(lambda v: v.to_bytes()),
    ),
    "RegisterAndMoveParameters": (
        RegisterAndMoveParameters.from_bytes,
        s.register_and_move_parameters.map(lambda v: v.to_bytes()),
    ),
    "ReadKeysData": (ReadKeysData.from_bytes, s.read_keys_data.map(lambda v: v.to_bytes())),
    "ReadReservationData": (
        ReadReservationData.from_bytes,
        s.read_reservation_data().map(lambda v: v.to_bytes()),
    ),
    "ReportCapabilitiesData": (
        ReportCapabilitiesData.from_bytes,
        s.report_capabilities_data.map(lambda v: v.to_bytes()),
    ),
    "ReadFullStatusData": (
        ReadFullStatusData.from_bytes,
        s.full_status_data.map(lambda v: v.to_bytes()),
    ),
}


# Values that steer decoders into their edge cases (NUL, all ones, protocol and format ids).
INTERESTING_BYTES = st.one_of(
    st.sampled_from([0x00, 0xFF, 0x04, 0x05, 0x06, 0x45, 0x80]), st.integers(0, 255)
)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few bytes changed, the end cut, or bytes appended."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(0, 4))):
        if data and draw(st.booleans()):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(INTERESTING_BYTES)
    choice = draw(st.sampled_from(["keep", "cut", "extend"]))
    if choice == "cut" and data:
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif choice == "extend":
        data += draw(st.binary(max_size=40))
    return bytes(data)


def check_decoder(decode: Callable[[bytes], Any], data: bytes) -> None:
    """Decode *data*: only ScsiError may escape; an accepted value must survive a round trip."""
    try:
        value = decode(data)
    except ScsiError:
        return
    again = decode(value.to_bytes())
    assert again == value


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(name: str, data: bytes) -> None:
    check_decoder(CODECS[name][0], data)


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=300)
@given(data=st.data())
def test_mutated_encodings(name: str, data: st.DataObject) -> None:
    decode, valid = CODECS[name]
    check_decoder(decode, data.draw(mutated(valid)))


@given(st.binary(max_size=300), st.integers(0, 310))
def test_transport_id_decode_at_any_offset(data: bytes, offset: int) -> None:
    try:
        tid, size = TransportID.decode(data, offset)
    except ScsiError:
        return
    assert offset + size <= len(data)
    # The TransportID occupies exactly *size* bytes: decoding just those gives the same.
    assert TransportID.decode(data[offset : offset + size]) == (tid, size)


TID_LISTS = st.lists(s.transport_ids, max_size=4).map(
    lambda tids: b"".join(t.to_bytes() for t in tids)
)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), mutated(TID_LISTS)))
def test_transport_id_list(data: bytes) -> None:
    try:
        tids = TransportID.decode_list(data)
    except ScsiError:
        return
    assert TransportID.decode_list(b"".join(t.to_bytes() for t in tids)) == tids


@given(
    st.integers(0, 31),
    st.one_of(st.binary(max_size=200), mutated(s.pr_out_parameters().map(lambda v: v.to_bytes()))),
)
def test_decode_pr_out_parameters(action: int, data: bytes) -> None:
    try:
        value = decode_pr_out_parameters(action, data)
    except ScsiError:
        return
    assert decode_pr_out_parameters(action, value.to_bytes()) == value


@given(st.integers(0, 31), st.binary(max_size=200))
def test_decode_pr_in_data(action: int, data: bytes) -> None:
    try:
        value = decode_pr_in_data(action, data)
    except ScsiError:
        return
    assert decode_pr_in_data(action, value.to_bytes()) == value


@given(st.binary(max_size=40))
def test_transfer_length(data: bytes) -> None:
    try:
        length = transfer_length(data)
    except ScsiError:
        assert data == b""
        return
    assert -1 <= length <= 0xFFFFFFFF


@given(st.binary(max_size=96))
def test_result_sense_data(sense: bytes) -> None:
    result = ScsiResult(ScsiStatus.CHECK_CONDITION, sense)
    try:
        decoded = result.sense_data
    except ScsiError:
        return
    assert decoded is None or SenseData.from_bytes(decoded.to_bytes()) == decoded


@st.composite
def iscsi_like(draw: st.DrawFn) -> bytes:
    """Bytes shaped like an iSCSI TransportID: plausible header, text with stray NULs."""
    first = draw(st.sampled_from([0x05, 0x45, 0x85, 0xC5, 0x15, 0x55]))
    text = draw(st.text(alphabet="iqn.:,0x-aBf\0\xe9", max_size=40)).encode()
    if draw(st.booleans()):
        text = (
            text.replace(b"\0", b"")
            + b",i,0x"
            + draw(st.text("0123456789abcdefG", max_size=14)).encode()
        )
    size = draw(st.one_of(st.just((len(text) + 4) & ~3), st.integers(0, 64)))
    body = (text + b"\0" * draw(st.integers(0, 4))).ljust(size, b"\0")[: max(size, 0)]
    return bytes((first, 0)) + size.to_bytes(2, "big") + body


@settings(max_examples=500)
@given(iscsi_like())
def test_iscsi_shaped_bytes(data: bytes) -> None:
    check_decoder(TransportID.from_bytes, data)
