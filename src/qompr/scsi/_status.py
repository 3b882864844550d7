# SPDX-License-Identifier: MIT
"""SAM status codes and the result value every PR manager returns."""

from __future__ import annotations

import enum

import attrs

from qompr.errors import QomprError
from qompr.scsi._sense import SenseCode
from qompr.scsi._sense import SenseData

__all__ = ["CommandFailed", "ScsiResult", "ScsiStatus"]


class ScsiStatus(enum.IntEnum):
    """SAM-5 status byte values (the ones a PR command can end with)."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


def _status(value: int) -> ScsiStatus:
    # Every command's result passes here: skip the enum lookup for a member already.
    return value if type(value) is ScsiStatus else ScsiStatus(value)


@attrs.frozen
class ScsiResult:
    """The outcome of one command: a value, never an exception.

    :param status: the SAM status byte.
    :param sense: sense bytes; meaningful only with CHECK CONDITION (empty otherwise).
    :param data: data-in bytes (PR IN payload); empty for PR OUT and for failed commands.
    """

    status: ScsiStatus = attrs.field(converter=_status)
    sense: bytes = b""
    data: bytes = b""

    @classmethod
    def good(cls, data: bytes = b"") -> ScsiResult:
        """GOOD status, with optional data-in bytes."""
        return cls(ScsiStatus.GOOD, b"", bytes(data))

    @classmethod
    def check(cls, code: SenseCode, *, fixed: bool = True) -> ScsiResult:
        """CHECK CONDITION with sense for *code*, laid out as QEMU's ``scsi_build_sense``.

        :param code: the sense key and ASC/ASCQ, e.g. ``SenseCode.INVALID_FIELD``.
        :param fixed: fixed-format (18 bytes, the default, as qemu-pr-helper sends) or
            descriptor-format (8 bytes) sense.
        """
        return cls(ScsiStatus.CHECK_CONDITION, code.to_bytes(fixed=fixed))

    @classmethod
    def conflict(cls) -> ScsiResult:
        """RESERVATION CONFLICT, which carries no sense data."""
        return cls(ScsiStatus.RESERVATION_CONFLICT)

    @property
    def ok(self) -> bool:
        """True when the status is GOOD."""
        return self.status == ScsiStatus.GOOD

    @property
    def sense_data(self) -> SenseData | None:
        """The decoded :attr:`sense`, or ``None`` when there is none.

        Sense that is empty or all zero bytes (qemu-pr-helper always sends 96 bytes) counts as
        none.

        :raises qompr.errors.ScsiError: if the sense bytes are present but malformed.
        """
        if not any(self.sense):
            return None
        return SenseData.from_bytes(self.sense)

    @property
    def sense_code(self) -> SenseCode | None:
        """The (key, ASC, ASCQ) of :attr:`sense_data`, or ``None`` when there is no sense."""
        sense = self.sense_data
        return None if sense is None else sense.code

    def raise_for_status(self) -> ScsiResult:
        """Opt-in: raise :class:`CommandFailed` unless the status is GOOD; else return self."""
        if not self.ok:
            raise CommandFailed(self)
        return self


class CommandFailed(QomprError):  # noqa: N818  (the lead's name, kept)
    """Raised only by :meth:`ScsiResult.raise_for_status`."""

    def __init__(self, result: ScsiResult) -> None:
        super().__init__(f"SCSI command failed with status {result.status.name}")
        self.result = result
