# SPDX-License-Identifier: MIT
"""Sense codes and sense data (docs/reference/qemu-pr-helper.md §9; docs/reference/spc4-pr.md
§0)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qompr.errors import ScsiError
from qompr.scsi import Asc
from qompr.scsi import SenseCode
from qompr.scsi import SenseData
from qompr.scsi import SenseKey
from qompr.scsi import sense_length

from .strategies import sense_codes
from .strategies import sense_data

# QEMU's SENSE_CODE table, transcribed from docs/reference/qemu-pr-helper.md §9, plus
# docs/reference/spc4-pr.md §0.
TABLE = [
    ("NO_SENSE", 0x00, 0x00, 0x00),
    ("NOT_READY", 0x02, 0x04, 0x00),
    ("LUN_NOT_READY", 0x02, 0x04, 0x03),
    ("NO_MEDIUM", 0x02, 0x3A, 0x00),
    ("READ_ERROR", 0x03, 0x11, 0x00),
    ("TARGET_FAILURE", 0x04, 0x44, 0x00),
    ("INVALID_OPCODE", 0x05, 0x20, 0x00),
    ("LBA_OUT_OF_RANGE", 0x05, 0x21, 0x00),
    ("INVALID_FIELD", 0x05, 0x24, 0x00),
    ("LUN_NOT_SUPPORTED", 0x05, 0x25, 0x00),
    ("INVALID_PARAM", 0x05, 0x26, 0x00),
    ("INVALID_PARAM_VALUE", 0x05, 0x26, 0x01),
    ("INVALID_PARAM_LEN", 0x05, 0x1A, 0x00),
    ("SCSI_BUS_RESET", 0x06, 0x29, 0x02),
    ("RESET", 0x06, 0x29, 0x00),
    ("WRITE_PROTECTED", 0x07, 0x27, 0x00),
    ("SPACE_ALLOC_FAILED", 0x07, 0x27, 0x07),
    ("IO_ERROR", 0x0B, 0x00, 0x06),
    ("LUN_NOT_RESPONDING", 0x0B, 0x05, 0x00),
    ("LUN_COMM_FAILURE", 0x0B, 0x08, 0x00),
    ("I_T_NEXUS_LOSS", 0x0B, 0x29, 0x07),
    ("COMMAND_TIMEOUT", 0x0B, 0x2E, 0x02),
    ("COMMAND_ABORTED", 0x0B, 0x2F, 0x02),
    ("INVALID_RELEASE", 0x05, 0x26, 0x04),
    ("INSUFFICIENT_REGISTRATION_RESOURCES", 0x05, 0x55, 0x04),
    ("RESERVATIONS_PREEMPTED", 0x06, 0x2A, 0x03),
    ("RESERVATIONS_RELEASED", 0x06, 0x2A, 0x04),
    ("REGISTRATIONS_PREEMPTED", 0x06, 0x2A, 0x05),
    ("PR_INFORMATION_LOST", 0x07, 0x44, 0x01),
    ("NOT_READY_LUN_COMM_FAILURE", 0x02, 0x08, 0x00),
]


@pytest.mark.parametrize(("name", "key", "asc", "ascq"), TABLE)
def test_named_codes(name: str, key: int, asc: int, ascq: int) -> None:
    code = getattr(SenseCode, name)
    assert (code.key, code.asc, code.ascq) == (key, asc, ascq)
    assert code.name == name
    assert SenseCode.by_name(name) is code
    assert SenseCode(key, asc, ascq) == code


def test_names_mapping_is_complete_and_a_copy() -> None:
    names = SenseCode.names()
    assert list(names) == [row[0] for row in TABLE]
    names.clear()
    assert SenseCode.names()  # the copy did not empty the table


def test_unnamed_code() -> None:
    code = SenseCode(SenseKey.MEDIUM_ERROR, 0x0C, 0x00)
    assert code.name is None
    assert code.additional is None
    assert str(code) == "MEDIUM ERROR, ASC/ASCQ 0Ch/00h"
    with pytest.raises(KeyError):
        SenseCode.by_name("NOT_A_CODE")


def test_code_str_and_additional() -> None:
    code = SenseCode.INVALID_FIELD
    assert code.additional is Asc.INVALID_FIELD_IN_CDB
    assert str(code) == "ILLEGAL REQUEST, ASC/ASCQ 24h/00h (INVALID FIELD IN CDB)"
    assert SenseCode.of(SenseKey.UNIT_ATTENTION, Asc.RESERVATIONS_RELEASED) == (
        SenseCode.RESERVATIONS_RELEASED
    )


def test_asc_pairs() -> None:
    assert Asc.REGISTRATIONS_PREEMPTED.asc == 0x2A
    assert Asc.REGISTRATIONS_PREEMPTED.ascq == 0x05
    assert Asc.of(0x1A, 0x00) is Asc.PARAMETER_LIST_LENGTH_ERROR
    assert Asc.of(0x55, 0x04) is Asc.INSUFFICIENT_REGISTRATION_RESOURCES
    assert Asc.of(0xFF, 0xFF) is None
    assert Asc.LUN_COMMUNICATION_FAILURE.description == "LOGICAL UNIT COMMUNICATION FAILURE"


@pytest.mark.parametrize(("key", "asc", "ascq"), [(16, 0, 0), (0, 256, 0), (0, 0, -1)])
def test_code_validators(key: int, asc: int, ascq: int) -> None:
    with pytest.raises(ValueError):
        SenseCode(key, asc, ascq)


# -- encoding: exactly QEMU's scsi_build_sense layouts ---------------------------------------


def test_fixed_layout() -> None:
    raw = SenseCode.INVALID_FIELD.to_bytes()
    assert raw == bytes.fromhex("70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00")
    assert len(raw) == 18


def test_descriptor_layout() -> None:
    raw = SenseCode.REGISTRATIONS_PREEMPTED.to_bytes(fixed=False)
    assert raw == bytes.fromhex("72 06 2a 05 00 00 00 00")


def test_deferred_layouts() -> None:
    sense = SenseData(SenseKey.MEDIUM_ERROR, 0x11, 0x00, deferred=True)
    assert sense.to_bytes()[0] == 0x71
    assert sense.to_bytes(fixed=False)[0] == 0x73
    assert str(sense).endswith("[deferred]")
    assert SenseData.from_bytes(sense.to_bytes()) == sense
    assert SenseData.from_bytes(sense.to_bytes(fixed=False)) == sense


# -- decoding -------------------------------------------------------------------------------


def test_decode_helper_sense_buffer_of_96_bytes() -> None:
    raw = SenseCode.LUN_COMM_FAILURE.to_bytes().ljust(96, b"\0")
    sense = SenseData.from_bytes(raw)
    assert sense.code == SenseCode.LUN_COMM_FAILURE
    assert not sense.deferred


def test_decode_fixed_with_valid_bit_and_flags() -> None:
    # VALID bit in byte 0, FILEMARK/EOM/ILI bits in byte 2 around the key.
    raw = bytearray(SenseCode.INVALID_PARAM.to_bytes())
    raw[0] |= 0x80
    raw[2] |= 0xE0
    assert SenseData.from_bytes(bytes(raw)).code == SenseCode.INVALID_PARAM


def test_decode_fixed_honours_additional_length() -> None:
    raw = bytearray(SenseCode.INVALID_PARAM.to_bytes())
    raw[7] = 4  # sense ends at byte 11: ASC and ASCQ are not part of it (Linux reads 0)
    sense = SenseData.from_bytes(bytes(raw))
    assert (sense.key, sense.asc, sense.ascq) == (SenseKey.ILLEGAL_REQUEST, 0, 0)


def test_decode_short_fixed_reads_key_only() -> None:
    sense = SenseData.from_bytes(bytes((0x70, 0, 0x06)))
    assert sense == SenseData(SenseKey.UNIT_ATTENTION, 0, 0)


def test_decode_descriptor_from_a_real_device() -> None:
    # Descriptor sense with one information descriptor after the 8-byte header.
    raw = bytes.fromhex("72 05 24 00 00 00 00 0c 00 0a 80 00 00 00 00 00 00 00 12 34")
    assert SenseData.from_bytes(raw).code == SenseCode.INVALID_FIELD


@pytest.mark.parametrize(
    "raw",
    [b"", bytes(18), bytes(96), b"\x7f" + bytes(17), b"\x70\x00", b"\x72", b"\x01\x02\x03"],
    ids=["empty", "zeros-18", "zeros-96", "vendor-7f", "fixed-2", "desc-1", "bad-code"],
)
def test_decode_refuses(raw: bytes) -> None:
    with pytest.raises(ScsiError):
        SenseData.from_bytes(raw)


@given(sense_data)
def test_round_trip_both_formats(sense: SenseData) -> None:
    assert SenseData.from_bytes(sense.to_bytes()) == sense
    assert SenseData.from_bytes(sense.to_bytes(fixed=False)) == sense
    assert len(sense.to_bytes()) == 18
    assert len(sense.to_bytes(fixed=False)) == 8


@given(sense_codes, st.booleans())
def test_code_round_trip(code: SenseCode, fixed: bool) -> None:
    assert SenseData.from_bytes(code.to_bytes(fixed=fixed)).code == code


@pytest.mark.parametrize(
    ("buffer", "length"),
    [
        (SenseCode.INVALID_FIELD.to_bytes().ljust(96, b"\0"), 18),  # fixed: 8 + 10
        (SenseCode.INVALID_FIELD.to_bytes(fixed=False).ljust(96, b"\0"), 8),  # descriptor
        (bytes([0x71, 0, 6, 0, 0, 0, 0, 200]), 8),  # cut short: never past the buffer
        (bytes(96), 96),  # no response code: all of it
        (bytes([0x70, 0, 6]), 3),  # shorter than the header
    ],
)
def test_sense_length(buffer: bytes, length: int) -> None:
    assert sense_length(buffer) == length
