# SPDX-License-Identifier: MIT
"""Decoding errors that say which CHECK CONDITION a device server should answer with.

All derive from :class:`qompr.errors.ScsiError`::

    ScsiError
     ├── CdbError                      not a CDB of that opcode: INVALID OPCODE or INVALID FIELD
     └── ParameterListError            PR OUT parameter list: INVALID FIELD IN PARAMETER LIST 26/00
          ├── ParameterListLengthError PARAMETER LIST LENGTH ERROR 1A/00
          └── TransportIDError         a TransportID or TransportID list: 26/00
               └── TransportIDLengthError  a TransportID list whose length disagrees: 26/00

Each carries :attr:`~CdbError.sense_code`, the answer LIO gives (docs/reference/spc4-pr.md §3.0,
§5), which is also SPC-4's answer except where :class:`TransportIDLengthError` says otherwise.
:class:`ParameterListError` also carries the keys from the list when the list was long enough
to hold them, because LIO checks the RESERVATION KEY before it looks at TransportIDs.
"""

from __future__ import annotations

from typing import ClassVar

from qompr.errors import ScsiError
from qompr.scsi._sense import SenseCode

__all__ = [
    "CdbError",
    "ParameterListError",
    "ParameterListLengthError",
    "TransportIDError",
    "TransportIDLengthError",
]


class CdbError(ScsiError):
    """Bytes that cannot be a CDB of the opcode asked for (too short, wrong opcode, junk).

    Reserved fields and reserved service actions are *not* errors: the CDB classes return them
    as values for the engine to judge.

    :param message: what is wrong.
    :param sense_code: the sense to answer with (INVALID_FIELD unless told otherwise; a wrong
        opcode gives INVALID_OPCODE).
    """

    def __init__(self, message: str, *, sense_code: SenseCode = SenseCode.INVALID_FIELD) -> None:
        super().__init__(message)
        self.sense_code = sense_code


class ParameterListError(ScsiError):
    """A PR OUT parameter list with an invalid field (ILLEGAL REQUEST 26/00 by default).

    :param message: what is wrong.
    :param sense_code: the sense to answer with.
    :param reservation_key: RESERVATION KEY from bytes 0-7, if the list held them.
    :param sa_key: SERVICE ACTION RESERVATION KEY from bytes 8-15, if the list held them.
    """

    default_sense_code: ClassVar[SenseCode] = SenseCode.INVALID_PARAM

    def __init__(
        self,
        message: str,
        *,
        sense_code: SenseCode | None = None,
        reservation_key: int | None = None,
        sa_key: int | None = None,
    ) -> None:
        super().__init__(message)
        self.sense_code = self.default_sense_code if sense_code is None else sense_code
        self.reservation_key = reservation_key
        self.sa_key = sa_key


class ParameterListLengthError(ParameterListError):
    """The parameter list has the wrong length for its kind: PARAMETER LIST LENGTH ERROR 1A/00.

    Raised when the list is shorter than 24 bytes (any service action), or when SPEC_I_PT=0 and
    the list is not exactly 24 bytes (docs/reference/spc4-pr.md §3.0 steps 5 and 7, §5).
    """

    default_sense_code = SenseCode.INVALID_PARAM_LEN


class TransportIDError(ParameterListError):
    """A TransportID that cannot be parsed: unknown protocol or format, bad length, no NUL.

    LIO and SPC-4 answer INVALID FIELD IN PARAMETER LIST (26/00).
    """


class TransportIDLengthError(TransportIDError):
    """A TransportID list whose TRANSPORTID PARAMETER DATA LENGTH disagrees with the list.

    Raised for SPEC_I_PT=1 lists shorter than 28 bytes or whose length is not 28 + the
    TransportID data length, and for REGISTER AND MOVE lists whose length is not 24 + that
    length.  LIO answers 26/00 in every case (the :attr:`sense_code` given here).  SCST answers
    1A/00 when a SPEC_I_PT list is too short, the "natural" code docs/reference/spc4-pr.md §3.1
    mentions; a strict-SPC engine may map this class to :attr:`SenseCode.INVALID_PARAM_LEN` instead.
    """
