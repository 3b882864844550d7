# SPDX-License-Identifier: MIT
"""PERSISTENT RESERVE IN parameter data (SPC-4 §6.15.2-§6.15.5; docs/reference/spc4-pr.md §1.5).

``to_bytes`` always produces the *full* data, with the ADDITIONAL LENGTH (or LENGTH) field
counting all of it; the device server then returns at most ALLOCATION LENGTH bytes of it, and
truncation is not an error (SPC-4 §4.2.5.6).  LIO's departures from that rule (no partial keys,
header-only READ RESERVATION, a READ FULL STATUS length that counts only what fitted) are engine
policy and are not reproduced here.

``from_bytes`` accepts such truncated data wherever the format allows: READ KEYS and READ FULL
STATUS return the complete keys and descriptors that arrived (``strict=True`` refuses short
data instead).  Data that is complete but inconsistent (a key list that is not a multiple of 8
bytes, descriptors overrunning the ADDITIONAL LENGTH) is always a
:class:`~qompr.errors.ScsiError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from typing import Self
from typing import TypeAlias

import attrs

from qompr.errors import ScsiError
from qompr.scsi._constants import PrInAction
from qompr.scsi._constants import PrScope
from qompr.scsi._constants import PrType
from qompr.scsi._constants import PrTypeMask
from qompr.scsi._transport_id import TransportID
from qompr.scsi._util import as_pr_scope
from qompr.scsi._util import as_pr_type
from qompr.scsi._util import as_pr_type_or_none
from qompr.scsi._util import is_bool
from qompr.scsi._util import uint

__all__ = [
    "FullStatusDescriptor",
    "PrInData",
    "ReadFullStatusData",
    "ReadKeysData",
    "ReadReservationData",
    "ReportCapabilitiesData",
    "decode_pr_in_data",
]

_HEADER = 8  # PRGENERATION + ADDITIONAL LENGTH
_RESERVATION_DESCRIPTOR = 16  # READ RESERVATION ADDITIONAL LENGTH with a reservation
_CAPABILITIES_LENGTH = 8
_CAPABILITIES_MINIMUM = 6  # LENGTH, two flag bytes and the type mask
_FULL_STATUS_HEADER = 24  # a READ FULL STATUS descriptor without its TransportID


def _keys_valid(_instance: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for key in value:
        if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < 1 << 64:
            raise ValueError(f"{attribute.name} must hold 64-bit unsigned ints, not {key!r}")


def _int_tuple(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _header(data: bytes, what: str) -> tuple[int, int]:
    """(PRGENERATION, ADDITIONAL LENGTH) of READ KEYS / READ RESERVATION / READ FULL STATUS."""
    if len(data) < _HEADER:
        raise ScsiError(f"{what} data is {len(data)} bytes, shorter than its 8-byte header")
    return int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")


def _check_strict(data: bytes, additional: int, what: str, strict: bool) -> None:
    if strict and len(data) < _HEADER + additional:
        raise ScsiError(
            f"{what} data is truncated: {len(data)} of {_HEADER + additional} bytes present"
        )


@attrs.frozen
class ReadKeysData:
    """READ KEYS parameter data (SPC-4 §6.15.2).

    :param generation: PRGENERATION, a 32-bit counter.
    :param keys: one RESERVATION KEY per registered I_T nexus, in the device's order.
    """

    generation: int = attrs.field(validator=uint(32))
    keys: tuple[int, ...] = attrs.field(converter=_int_tuple, validator=_keys_valid)

    @classmethod
    def from_bytes(cls, data: bytes, *, strict: bool = False) -> Self:
        """Decode; a truncated key list yields the keys that arrived whole.

        :param strict: refuse data shorter than the ADDITIONAL LENGTH says.
        :raises ScsiError: shorter than 8 bytes, an ADDITIONAL LENGTH that is not a multiple
            of 8, or (with *strict*) truncated.
        """
        data = bytes(data)
        generation, additional = _header(data, "READ KEYS")
        if additional % 8:
            raise ScsiError(f"READ KEYS ADDITIONAL LENGTH {additional} is not a multiple of 8")
        _check_strict(data, additional, "READ KEYS", strict)
        body = data[_HEADER : _HEADER + additional]
        count = len(body) // 8
        keys = tuple(int.from_bytes(body[8 * i : 8 * i + 8], "big") for i in range(count))
        return cls(generation, keys)

    def to_bytes(self) -> bytes:
        """Encode in full; ADDITIONAL LENGTH = 8 × the number of keys."""
        body = b"".join(key.to_bytes(8, "big") for key in self.keys)
        return self.generation.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


@attrs.frozen
class ReadReservationData:
    """READ RESERVATION parameter data (SPC-4 §6.15.3).

    With no reservation, leave :attr:`type` as ``None`` (8 bytes, ADDITIONAL LENGTH 0).

    :param generation: PRGENERATION.
    :param type: the reservation TYPE, or ``None`` when there is no reservation.  Obsolete or
        reserved values are kept as plain ints.
    :param reservation_key: the holder's key; SPC-4 makes it 0 for all-registrants types.
    :param scope: the SCOPE (LU_SCOPE in practice).
    """

    generation: int = attrs.field(validator=uint(32))
    type: PrType | int | None = attrs.field(
        default=None,
        kw_only=True,
        converter=as_pr_type_or_none,
        validator=attrs.validators.optional(uint(4)),
    )
    reservation_key: int = attrs.field(default=0, kw_only=True, validator=uint(64))
    scope: PrScope | int = attrs.field(
        default=PrScope.LU_SCOPE, kw_only=True, converter=as_pr_scope, validator=uint(4)
    )

    def __attrs_post_init__(self) -> None:
        if self.type is None and (self.reservation_key or self.scope):
            raise ValueError("reservation_key and scope need a type (a reservation)")

    @property
    def has_reservation(self) -> bool:
        """True when a persistent reservation exists."""
        return self.type is not None

    @classmethod
    def from_bytes(cls, data: bytes, *, strict: bool = False) -> Self:
        """Decode.

        A reservation is read from bytes 8-15 (key) and 21 (SCOPE/TYPE), so data that reports
        a reservation but stops before byte 22 cannot be decoded.

        :param strict: also refuse data shorter than the ADDITIONAL LENGTH says.
        :raises ScsiError: shorter than 8 bytes, an ADDITIONAL LENGTH of 1-15, or a reservation
            whose TYPE byte is missing.
        """
        data = bytes(data)
        generation, additional = _header(data, "READ RESERVATION")
        _check_strict(data, additional, "READ RESERVATION", strict)
        if additional == 0:
            return cls(generation)
        if additional < _RESERVATION_DESCRIPTOR:
            raise ScsiError(f"READ RESERVATION ADDITIONAL LENGTH {additional} is not 0 or 16")
        if len(data) < 22:
            raise ScsiError(
                f"READ RESERVATION data is truncated to {len(data)} bytes before the TYPE byte"
            )
        return cls(
            generation,
            type=data[21] & 0x0F,
            reservation_key=int.from_bytes(data[8:16], "big"),
            scope=data[21] >> 4,
        )

    def to_bytes(self) -> bytes:
        """Encode in full: 8 bytes without a reservation, 24 bytes with one."""
        head = self.generation.to_bytes(4, "big")
        if self.type is None:
            return head + bytes(4)
        out = bytearray(_HEADER + _RESERVATION_DESCRIPTOR)
        out[0:4] = head
        out[4:8] = _RESERVATION_DESCRIPTOR.to_bytes(4, "big")
        out[8:16] = self.reservation_key.to_bytes(8, "big")
        out[21] = (self.scope << 4) | self.type
        return bytes(out)


@attrs.frozen
class ReportCapabilitiesData:
    """REPORT CAPABILITIES parameter data (SPC-4 §6.15.4), always 8 bytes with LENGTH = 8.

    :param rlr_c: Replace Lost Reservation Capable (byte 2, 80h).
    :param crh: Compatible Reservation Handling (byte 2, 10h).
    :param sip_c: Specify Initiator Ports Capable (byte 2, 08h).
    :param atp_c: All Target Ports Capable (byte 2, 04h).
    :param ptpl_c: Persist Through Power Loss Capable (byte 2, 01h).
    :param tmv: Type Mask Valid (byte 3, 80h).
    :param allow_commands: ALLOW COMMANDS (byte 3, bits 6-4), 0-7.
    :param ptpl_a: Persist Through Power Loss Activated (byte 3, 01h).
    :param type_mask: PERSISTENT RESERVATION TYPE MASK (bytes 4-5).
    """

    rlr_c: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    crh: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    sip_c: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    atp_c: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    ptpl_c: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    tmv: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    allow_commands: int = attrs.field(default=0, kw_only=True, validator=uint(3))
    ptpl_a: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    type_mask: PrTypeMask = attrs.field(
        default=PrTypeMask(0), kw_only=True, converter=PrTypeMask, validator=uint(16)
    )

    @classmethod
    def lio(cls, *, ptpl_a: bool = False) -> Self:
        """What LIO reports: ``00 08 1D 90|PTPL_A EA 01 00 00`` (docs/reference/spc4-pr.md §1.5,
        §8)."""
        return cls(
            crh=True,
            sip_c=True,
            atp_c=True,
            ptpl_c=True,
            tmv=True,
            allow_commands=1,
            ptpl_a=ptpl_a,
            type_mask=PrTypeMask.of(*PrType),
        )

    @property
    def types(self) -> frozenset[PrType]:
        """The PR types the type mask advertises."""
        return self.type_mask.types

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode; the first 6 bytes suffice (bytes 6-7 are reserved).  Reserved bits are
        ignored.

        :raises ScsiError: fewer than 6 bytes, or a LENGTH field below 6.
        """
        data = bytes(data)
        if len(data) < _CAPABILITIES_MINIMUM:
            raise ScsiError(f"REPORT CAPABILITIES data is {len(data)} bytes, needs at least 6")
        length = int.from_bytes(data[0:2], "big")
        if length < _CAPABILITIES_MINIMUM:
            raise ScsiError(f"REPORT CAPABILITIES LENGTH {length} is below 6")
        b2, b3 = data[2], data[3]
        return cls(
            rlr_c=bool(b2 & 0x80),
            crh=bool(b2 & 0x10),
            sip_c=bool(b2 & 0x08),
            atp_c=bool(b2 & 0x04),
            ptpl_c=bool(b2 & 0x01),
            tmv=bool(b3 & 0x80),
            allow_commands=(b3 >> 4) & 0x07,
            ptpl_a=bool(b3 & 0x01),
            type_mask=int.from_bytes(data[4:6], "big"),
        )

    def to_bytes(self) -> bytes:
        """Encode the 8 bytes."""
        b2 = (
            (0x80 if self.rlr_c else 0)
            | (0x10 if self.crh else 0)
            | (0x08 if self.sip_c else 0)
            | (0x04 if self.atp_c else 0)
            | (0x01 if self.ptpl_c else 0)
        )
        b3 = (0x80 if self.tmv else 0) | (self.allow_commands << 4) | (0x01 if self.ptpl_a else 0)
        return (
            _CAPABILITIES_LENGTH.to_bytes(2, "big")
            + bytes((b2, b3))
            + int(self.type_mask).to_bytes(2, "big")
            + bytes(2)
        )


@attrs.frozen
class FullStatusDescriptor:
    """One READ FULL STATUS descriptor: a registered I_T nexus (SPC-4 §6.15.5).

    :param reservation_key: the registration's key.
    :param transport_id: the initiator port.
    :param all_tg_pt: ALL_TG_PT (byte 12, 02h): registered through every target port.
    :param r_holder: R_HOLDER (byte 12, 01h): the nexus holds the reservation.
    :param scope: SCOPE; meaningful only with R_HOLDER.
    :param type: TYPE; meaningful only with R_HOLDER (obsolete/reserved values stay ints).
    :param relative_target_port: RELATIVE TARGET PORT IDENTIFIER (18-19); undefined with
        ALL_TG_PT, where LIO writes 0.
    """

    reservation_key: int = attrs.field(validator=uint(64))
    transport_id: TransportID = attrs.field(validator=attrs.validators.instance_of(TransportID))
    all_tg_pt: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    r_holder: bool = attrs.field(default=False, kw_only=True, validator=is_bool)
    scope: PrScope | int = attrs.field(
        default=PrScope.LU_SCOPE, kw_only=True, converter=as_pr_scope, validator=uint(4)
    )
    type: PrType | int = attrs.field(
        default=0, kw_only=True, converter=as_pr_type, validator=uint(4)
    )
    relative_target_port: int = attrs.field(default=0, kw_only=True, validator=uint(16))

    def to_bytes(self) -> bytes:
        """Encode: the 24-byte descriptor header, then the TransportID."""
        tid = self.transport_id.to_bytes()
        out = bytearray(_FULL_STATUS_HEADER)
        out[0:8] = self.reservation_key.to_bytes(8, "big")
        out[12] = (0x02 if self.all_tg_pt else 0) | (0x01 if self.r_holder else 0)
        out[13] = (self.scope << 4) | self.type
        out[18:20] = self.relative_target_port.to_bytes(2, "big")
        out[20:24] = len(tid).to_bytes(4, "big")
        return bytes(out) + tid


def _descriptor_tuple(value: Iterable[FullStatusDescriptor]) -> tuple[FullStatusDescriptor, ...]:
    return tuple(value)


@attrs.frozen
class ReadFullStatusData:
    """READ FULL STATUS parameter data (SPC-4 §6.15.5).

    :param generation: PRGENERATION.
    :param descriptors: one :class:`FullStatusDescriptor` per registered I_T nexus.
    """

    generation: int = attrs.field(validator=uint(32))
    descriptors: tuple[FullStatusDescriptor, ...] = attrs.field(
        converter=_descriptor_tuple,
        validator=attrs.validators.deep_iterable(
            attrs.validators.instance_of(FullStatusDescriptor)
        ),
    )

    @classmethod
    def from_bytes(cls, data: bytes, *, strict: bool = False) -> Self:
        """Decode; truncated data yields the descriptors that arrived whole.

        The TransportID of each descriptor is read from the start of its ADDITIONAL DESCRIPTOR
        LENGTH bytes; anything after it there is padding and ignored.

        :param strict: refuse data shorter than the ADDITIONAL LENGTH says.
        :raises ScsiError: shorter than 8 bytes, descriptors that overrun the ADDITIONAL
            LENGTH, a bad TransportID (:class:`~qompr.scsi.TransportIDError`), or (with
            *strict*) truncated data.
        """
        data = bytes(data)
        generation, additional = _header(data, "READ FULL STATUS")
        _check_strict(data, additional, "READ FULL STATUS", strict)
        limit = _HEADER + additional
        complete = len(data) >= limit
        end = min(limit, len(data))
        descriptors: list[FullStatusDescriptor] = []
        offset = _HEADER
        while offset < end:
            tid_at = offset + _FULL_STATUS_HEADER
            if tid_at > end:
                if complete:
                    raise ScsiError("READ FULL STATUS descriptor overruns the ADDITIONAL LENGTH")
                break
            tid_length = int.from_bytes(data[offset + 20 : tid_at], "big")
            if tid_at + tid_length > end:
                if complete:
                    raise ScsiError("READ FULL STATUS descriptor overruns the ADDITIONAL LENGTH")
                break
            # Whatever follows the TransportID inside its descriptor length is padding.
            transport_id, _ = TransportID.decode(data[tid_at : tid_at + tid_length])
            flags, scope_type = data[offset + 12], data[offset + 13]
            descriptors.append(
                FullStatusDescriptor(
                    int.from_bytes(data[offset : offset + 8], "big"),
                    transport_id,
                    all_tg_pt=bool(flags & 0x02),
                    r_holder=bool(flags & 0x01),
                    scope=scope_type >> 4,
                    type=scope_type & 0x0F,
                    relative_target_port=int.from_bytes(data[offset + 18 : offset + 20], "big"),
                )
            )
            offset = tid_at + tid_length
        return cls(generation, descriptors)

    def to_bytes(self) -> bytes:
        """Encode in full; ADDITIONAL LENGTH counts every descriptor (SPC-4, not LIO)."""
        body = b"".join(descriptor.to_bytes() for descriptor in self.descriptors)
        return self.generation.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


#: Any PERSISTENT RESERVE IN parameter data.
PrInData: TypeAlias = (
    ReadKeysData | ReadReservationData | ReportCapabilitiesData | ReadFullStatusData
)


def decode_pr_in_data(
    service_action: PrInAction | int, data: bytes, *, strict: bool = False
) -> PrInData:
    """Decode PR IN data of the format *service_action* returns.

    :param strict: passed on where the format has a length to honour (not REPORT
        CAPABILITIES, whose bytes 6-7 are reserved).
    :raises ScsiError: for a reserved service action, or as the format's ``from_bytes``.
    """
    if service_action == PrInAction.READ_KEYS:
        return ReadKeysData.from_bytes(data, strict=strict)
    if service_action == PrInAction.READ_RESERVATION:
        return ReadReservationData.from_bytes(data, strict=strict)
    if service_action == PrInAction.REPORT_CAPABILITIES:
        return ReportCapabilitiesData.from_bytes(data)
    if service_action == PrInAction.READ_FULL_STATUS:
        return ReadFullStatusData.from_bytes(data, strict=strict)
    raise ScsiError(f"PR IN service action {int(service_action):#04x} has no data format")
