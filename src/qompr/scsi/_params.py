# SPDX-License-Identifier: MIT
"""PERSISTENT RESERVE OUT parameter lists (SPC-4 §6.16.3, §6.16.4; docs/reference/spc4-pr.md §1.3,
§1.4).

Two layouts exist:

* the **basic** list (every service action but REGISTER AND MOVE): 24 bytes, flags in byte 20,
  plus the TransportID list when SPEC_I_PT=1;
* the **REGISTER AND MOVE** list: flags in byte 17 (not 20), the destination RELATIVE TARGET
  PORT IDENTIFIER at 18-19, and the TransportID length at 20-23.

Length checks follow LIO's order (docs/reference/spc4-pr.md §3.0 steps 5-7): fewer than 24 bytes, or
a SPEC_I_PT=0 basic list that is not exactly 24 bytes, is a :class:`ParameterListLengthError`
(1A/00).  A TransportID list whose length field disagrees is a :class:`TransportIDLengthError`
and a bad TransportID a :class:`TransportIDError` (both 26/00).  Every
:class:`ParameterListError` carries the RESERVATION KEY and SERVICE ACTION RESERVATION KEY when
the list held them, so the engine can check the key first, as LIO does, and answer RESERVATION
CONFLICT before it reports a malformed TransportID.

Obsolete fields (bytes 16-19 and 22-23 of the basic list) and reserved bits are ignored when
decoding and written as zero.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import Self
from typing import TypeVar

import attrs

from qompr.scsi._constants import PrOutAction
from qompr.scsi._errors import ParameterListError
from qompr.scsi._errors import ParameterListLengthError
from qompr.scsi._errors import TransportIDError
from qompr.scsi._errors import TransportIDLengthError
from qompr.scsi._transport_id import TransportID
from qompr.scsi._util import is_bool
from qompr.scsi._util import uint

__all__ = [
    "BASIC_PARAMETER_LIST_SIZE",
    "PrOutParameters",
    "RegisterAndMoveParameters",
    "decode_pr_out_parameters",
]

#: Size of the basic PR OUT parameter list without TransportIDs.
BASIC_PARAMETER_LIST_SIZE = 24
_SPEC_I_PT_HEADER = 28  # basic list + TRANSPORTID PARAMETER DATA LENGTH

# Byte 20 of the basic list (SPC-4 §6.16.3).
_SPEC_I_PT = 0x08
_ALL_TG_PT = 0x04
_APTPL = 0x01
# Byte 17 of the REGISTER AND MOVE list (SPC-4 §6.16.4).
_UNREG = 0x02

_T = TypeVar("_T")


def _is_tid(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, TransportID):
        raise TypeError(f"{attribute.name} must be a TransportID, not {type(value).__name__}")


def _are_tids(_instance: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    if not all(isinstance(tid, TransportID) for tid in value):
        raise TypeError(f"{attribute.name} must hold TransportID values only")


def _tid_tuple(value: Iterable[TransportID]) -> tuple[TransportID, ...]:
    return tuple(value)


def _keys(data: bytes) -> tuple[int | None, int | None]:
    """RESERVATION KEY and SERVICE ACTION RESERVATION KEY, if *data* is long enough."""
    if len(data) < 16:
        return None, None
    return _key(data, 0), _key(data, 8)


def _key(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 8], "big")


def _check_minimum(data: bytes) -> None:
    """Every PR OUT list, REGISTER AND MOVE included, is at least 24 bytes (§3.0 step 5)."""
    if len(data) < BASIC_PARAMETER_LIST_SIZE:
        rk, sark = _keys(data)
        raise ParameterListLengthError(
            f"Parameter list is {len(data)} bytes, needs at least 24",
            reservation_key=rk,
            sa_key=sark,
        )


@attrs.frozen
class PrOutParameters:
    """The basic PR OUT parameter list, with the SPEC_I_PT TransportID extension.

    :param reservation_key: RESERVATION KEY, bytes 0-7.
    :param sa_key: SERVICE ACTION RESERVATION KEY, bytes 8-15.
    :param spec_i_pt: SPEC_I_PT (byte 20 bit 3): TransportIDs follow at byte 24.
    :param all_tg_pt: ALL_TG_PT (byte 20 bit 2).
    :param aptpl: APTPL (byte 20 bit 0).
    :param transport_ids: the TransportIDs of a SPEC_I_PT list (needs ``spec_i_pt=True``).
    """

    reservation_key: int = attrs.field(default=0, kw_only=True, validator=uint(64))
    sa_key: int = attrs.field(default=0, kw_only=True, validator=uint(64))
    spec_i_pt: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    all_tg_pt: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    aptpl: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    transport_ids: tuple[TransportID, ...] = attrs.field(
        default=(), kw_only=True, converter=_tid_tuple, validator=_are_tids
    )

    def __attrs_post_init__(self) -> None:
        if self.transport_ids and not self.spec_i_pt:
            raise ValueError("transport_ids need spec_i_pt=True")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode a basic parameter list; *data* is the whole list (its length matters).

        :raises ParameterListLengthError: fewer than 24 bytes, or SPEC_I_PT=0 and not 24 bytes.
        :raises TransportIDLengthError: SPEC_I_PT=1 and the list is shorter than 28 bytes or
            its length is not 28 + TRANSPORTID PARAMETER DATA LENGTH.
        :raises TransportIDError: SPEC_I_PT=1 and a TransportID is invalid or cut off.
        """
        data = bytes(data)
        _check_minimum(data)
        rk, sark = _key(data, 0), _key(data, 8)
        flags = data[20]
        spec_i_pt = bool(flags & _SPEC_I_PT)
        transport_ids: tuple[TransportID, ...] = ()
        if not spec_i_pt:
            if len(data) != BASIC_PARAMETER_LIST_SIZE:
                raise ParameterListLengthError(
                    f"Parameter list is {len(data)} bytes with SPEC_I_PT=0, needs exactly 24",
                    reservation_key=rk,
                    sa_key=sark,
                )
        else:
            # SPC-4 §6.16.3: TRANSPORTID PARAMETER DATA LENGTH at 24-27, TransportIDs from 28.
            if len(data) < _SPEC_I_PT_HEADER:
                raise TransportIDLengthError(
                    f"Parameter list is {len(data)} bytes with SPEC_I_PT=1, needs at least 28",
                    reservation_key=rk,
                    sa_key=sark,
                )
            transport_ids = _transport_ids(data, 24, TransportID.decode_list, rk, sark)
        return cls(
            reservation_key=rk,
            sa_key=sark,
            spec_i_pt=spec_i_pt,
            all_tg_pt=bool(flags & _ALL_TG_PT),
            aptpl=bool(flags & _APTPL),
            transport_ids=transport_ids,
        )

    def to_bytes(self) -> bytes:
        """Encode: 24 bytes, or 28 + TransportIDs when :attr:`spec_i_pt` is set."""
        flags = (
            (_SPEC_I_PT if self.spec_i_pt else 0)
            | (_ALL_TG_PT if self.all_tg_pt else 0)
            | (_APTPL if self.aptpl else 0)
        )
        out = bytearray(BASIC_PARAMETER_LIST_SIZE)
        out[0:8] = self.reservation_key.to_bytes(8, "big")
        out[8:16] = self.sa_key.to_bytes(8, "big")
        out[20] = flags
        if self.spec_i_pt:
            tids = b"".join(tid.to_bytes() for tid in self.transport_ids)
            out += len(tids).to_bytes(4, "big") + tids
        return bytes(out)


@attrs.frozen
class RegisterAndMoveParameters:
    """The REGISTER AND MOVE parameter list (SPC-4 §6.16.4).

    :param reservation_key: RESERVATION KEY, bytes 0-7.
    :param sa_key: SERVICE ACTION RESERVATION KEY, bytes 8-15: the key to register for the
        destination I_T nexus.
    :param unreg: UNREG (byte 17 bit 1): unregister the sender after the move.
    :param aptpl: APTPL (byte 17 bit 0).
    :param relative_target_port: RELATIVE TARGET PORT IDENTIFIER of the destination, 18-19.
    :param transport_id: the destination initiator port, from byte 24.
    """

    transport_id: TransportID = attrs.field(kw_only=True, validator=_is_tid)
    reservation_key: int = attrs.field(default=0, kw_only=True, validator=uint(64))
    sa_key: int = attrs.field(default=0, kw_only=True, validator=uint(64))
    unreg: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    aptpl: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    relative_target_port: int = attrs.field(default=1, kw_only=True, validator=uint(16))

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode a REGISTER AND MOVE list; *data* is the whole list (its length matters).

        The TransportID must be followed only by NUL padding up to the TransportID length.

        :raises ParameterListLengthError: fewer than 24 bytes.
        :raises TransportIDLengthError: the length is not 24 + TRANSPORTID PARAMETER DATA LENGTH.
        :raises TransportIDError: the TransportID is missing, invalid or cut off.
        """
        data = bytes(data)
        _check_minimum(data)
        rk, sark = _key(data, 0), _key(data, 8)
        # SPC-4 §6.16.4: TRANSPORTID PARAMETER DATA LENGTH at 20-23, the TransportID from 24.
        transport_id = _transport_ids(data, 20, TransportID.from_bytes, rk, sark)
        return cls(
            reservation_key=rk,
            sa_key=sark,
            unreg=bool(data[17] & _UNREG),
            aptpl=bool(data[17] & _APTPL),
            relative_target_port=int.from_bytes(data[18:20], "big"),
            transport_id=transport_id,
        )

    def to_bytes(self) -> bytes:
        """Encode: 24 bytes plus the TransportID."""
        tid = self.transport_id.to_bytes()
        out = bytearray(BASIC_PARAMETER_LIST_SIZE)
        out[0:8] = self.reservation_key.to_bytes(8, "big")
        out[8:16] = self.sa_key.to_bytes(8, "big")
        out[17] = (_UNREG if self.unreg else 0) | (_APTPL if self.aptpl else 0)
        out[18:20] = self.relative_target_port.to_bytes(2, "big")
        out[20:24] = len(tid).to_bytes(4, "big")
        return bytes(out) + tid


def _transport_ids(
    data: bytes, length_at: int, decode: Callable[[bytes], _T], rk: int, sark: int
) -> _T:
    """*decode* applied to the bytes after the 4-byte TRANSPORTID PARAMETER DATA LENGTH at
    *length_at*, which must account for exactly the rest of the list.

    :raises TransportIDLengthError: it does not.
    :raises TransportIDError: *decode* refused the bytes; the error carries the list's keys
        (the sense LIO answers with reports them).
    """
    header = length_at + 4
    tid_length = int.from_bytes(data[length_at:header], "big")
    if tid_length + header != len(data):
        raise TransportIDLengthError(
            f"TRANSPORTID PARAMETER DATA LENGTH {tid_length} + {header} does not match "
            f"the parameter list length {len(data)}",
            reservation_key=rk,
            sa_key=sark,
        )
    try:
        return decode(data[header:])
    except TransportIDError as exc:
        raise TransportIDError(str(exc), reservation_key=rk, sa_key=sark) from None


def decode_pr_out_parameters(
    service_action: PrOutAction | int, data: bytes
) -> PrOutParameters | RegisterAndMoveParameters:
    """Decode the parameter list of a PR OUT command with *service_action*, in LIO's order.

    REGISTER AND MOVE gets :class:`RegisterAndMoveParameters`; every other service action,
    reserved ones included, the basic list.  Before the basic list's own checks, SPEC_I_PT=1
    with a service action other than REGISTER is refused with INVALID FIELD IN PARAMETER LIST
    (docs/reference/spc4-pr.md §3.0 step 6; §5).

    :raises ParameterListError: (or a subclass) as :meth:`PrOutParameters.from_bytes` and
        :meth:`RegisterAndMoveParameters.from_bytes` describe.
    """
    data = bytes(data)
    if service_action == PrOutAction.REGISTER_AND_MOVE:
        return RegisterAndMoveParameters.from_bytes(data)
    if (
        len(data) >= BASIC_PARAMETER_LIST_SIZE
        and data[20] & _SPEC_I_PT
        and service_action != PrOutAction.REGISTER
    ):
        rk, sark = _keys(data)
        raise ParameterListError(
            "SPEC_I_PT=1 is allowed only with REGISTER", reservation_key=rk, sa_key=sark
        )
    return PrOutParameters.from_bytes(data)
