# SPDX-License-Identifier: MIT
"""ScsiResult constructors and sense accessors."""

from __future__ import annotations

import pytest

from qompr.errors import ScsiError
from qompr.scsi import CommandFailed
from qompr.scsi import ScsiResult
from qompr.scsi import ScsiStatus
from qompr.scsi import SenseCode
from qompr.scsi import SenseData


def test_good() -> None:
    result = ScsiResult.good(b"\x00\x01")
    assert result == ScsiResult(ScsiStatus.GOOD, b"", b"\x00\x01")
    assert result.ok
    assert result.sense_data is None
    assert result.sense_code is None
    assert result.raise_for_status() is result
    assert ScsiResult.good().data == b""


def test_check_builds_qemu_fixed_sense() -> None:
    result = ScsiResult.check(SenseCode.INVALID_PARAM_LEN)
    assert result.status is ScsiStatus.CHECK_CONDITION
    assert result.sense == bytes.fromhex("70 00 05 00 00 00 00 0a 00 00 00 00 1a 00 00 00 00 00")
    assert result.data == b""
    assert result.sense_code == SenseCode.INVALID_PARAM_LEN
    assert result.sense_data == SenseData(5, 0x1A, 0)
    assert not result.ok


def test_check_descriptor_format() -> None:
    result = ScsiResult.check(SenseCode.RESERVATIONS_RELEASED, fixed=False)
    assert result.sense == bytes.fromhex("72 06 2a 04 00 00 00 00")
    assert result.sense_code == SenseCode.RESERVATIONS_RELEASED


def test_conflict_has_no_sense() -> None:
    result = ScsiResult.conflict()
    assert result.status is ScsiStatus.RESERVATION_CONFLICT
    assert result.sense == b""
    assert result.sense_data is None
    with pytest.raises(CommandFailed) as info:
        result.raise_for_status()
    assert info.value.result is result


def test_zero_sense_counts_as_none() -> None:
    # qemu-pr-helper always sends 96 sense bytes, zero unless CHECK CONDITION.
    assert ScsiResult(ScsiStatus.GOOD, bytes(96)).sense_data is None


def test_helper_padded_sense_decodes() -> None:
    result = ScsiResult(2, SenseCode.LUN_COMM_FAILURE.to_bytes().ljust(96, b"\0"))
    assert result.status is ScsiStatus.CHECK_CONDITION
    assert result.sense_code == SenseCode.LUN_COMM_FAILURE


def test_malformed_sense_raises_scsi_error() -> None:
    result = ScsiResult(ScsiStatus.CHECK_CONDITION, b"\x01\x02")
    with pytest.raises(ScsiError):
        _ = result.sense_data
