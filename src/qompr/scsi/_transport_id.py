# SPDX-License-Identifier: MIT
"""TransportIDs for Fibre Channel, SAS and iSCSI (SPC-4 §7.6.4; docs/reference/spc4-pr.md §1.6).

Byte 0 of every TransportID holds the FORMAT CODE (bits 7-6) and the PROTOCOL IDENTIFIER
(bits 3-0); bits 5-4 are reserved and ignored when decoding, as QEMU's multipath path does.

==============  ======  =====================================================================
Protocol        Format  Layout
==============  ======  =====================================================================
FCP (0h)        00b     24 bytes; N_PORT_NAME (WWPN) at bytes 8-15
SAS (6h)        00b     24 bytes; SAS ADDRESS at bytes 4-11
iSCSI (5h)      00b     ADDITIONAL LENGTH at 2-3; NUL-terminated, NUL-padded iSCSI name
iSCSI (5h)      01b     as 00b, but ``name,i,0x<12 hex digit ISID>`` then NUL and padding
==============  ======  =====================================================================

Encoding follows SPC-4's padding rule for iSCSI: the ADDITIONAL LENGTH is at least 20 and a
multiple of 4.  LIO pads only to a multiple of 4, which differs for format-00 names shorter than
19 bytes; the ISID is written as 12 lower-case hex digits, as LIO writes it.  Decoding requires
a multiple of 4 but, like LIO, not the minimum of 20.
"""

from __future__ import annotations

import re
from typing import Self

import attrs

from qompr._compat import override
from qompr.scsi._constants import ProtocolId
from qompr.scsi._errors import TransportIDError

__all__ = ["ISCSI_NAME_MAX", "TransportID"]

#: Longest iSCSI name in bytes (RFC 3720 §3.2.6.1).
ISCSI_NAME_MAX = 223
#: The separator between the iSCSI name and the ISID in format 01 (SPC-4 §7.6.4.6).
ISID_SEPARATOR = ",i,0x"
_FIXED_TID_SIZE = 24  # FC and SAS
_ISCSI_MIN_ADDITIONAL = 20
_HEX64 = re.compile(r"[0-9a-fA-F]{16}")
_HEX_ISID = re.compile(r"[0-9a-fA-F]{12}")


def _parse_wwn(value: int | str, what: str) -> int:
    """A 64-bit WWN from an int or from ``0x…``, ``naa.…``, ``21:00:…`` or bare hex text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be an int or a str, not {type(value).__name__}")
    text = value.strip()
    for prefix in ("0x", "naa."):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.replace(":", "").replace("-", "")
    if not _HEX64.fullmatch(text):
        raise ValueError(f"{what} {value!r} is not 16 hexadecimal digits")
    return int(text, 16)


def _parse_isid(value: int | str | None) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if not isinstance(value, str):
        raise TypeError(f"ISID must be an int or a str, not {type(value).__name__}")
    text = value.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    if not _HEX_ISID.fullmatch(text):
        raise ValueError(f"ISID {value!r} is not 12 hexadecimal digits")
    return int(text, 16)


@attrs.frozen
class TransportID:
    """An initiator port's TransportID.

    Use the named constructors :meth:`iscsi`, :meth:`fc` and :meth:`sas`; the fields are:

    :param protocol: FCP, SAS or iSCSI.
    :param address: FC N_PORT_NAME (WWPN) or SAS ADDRESS, 64 bits; ``None`` for iSCSI.
    :param iscsi_name: the iSCSI name (at most 223 UTF-8 bytes, no NUL); ``None`` otherwise.
    :param isid: the 48-bit ISID for an iSCSI *initiator port* TransportID (format 01), or
        ``None`` for the iSCSI *device name* form (format 00).
    """

    protocol: ProtocolId = attrs.field(converter=ProtocolId)
    address: int | None = attrs.field(default=None, kw_only=True)
    iscsi_name: str | None = attrs.field(default=None, kw_only=True)
    isid: int | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.protocol in (ProtocolId.FCP, ProtocolId.SAS):
            if self.iscsi_name is not None or self.isid is not None:
                raise ValueError(f"a {self.protocol.name} TransportID has no iSCSI name or ISID")
            if not isinstance(self.address, int) or isinstance(self.address, bool):
                raise TypeError(f"a {self.protocol.name} TransportID needs an int address")
            if not 0 <= self.address < 1 << 64:
                raise ValueError(f"address {self.address:#x} does not fit in 64 bits")
        elif self.protocol == ProtocolId.ISCSI:
            if self.address is not None:
                raise ValueError("an iSCSI TransportID has no address, only a name")
            if not isinstance(self.iscsi_name, str):
                raise TypeError("an iSCSI TransportID needs a str iscsi_name")
            if not self.iscsi_name or "\0" in self.iscsi_name:
                raise ValueError("an iSCSI name must be non-empty and contain no NUL")
            if len(self.iscsi_name.encode()) > ISCSI_NAME_MAX:
                raise ValueError(f"an iSCSI name is at most {ISCSI_NAME_MAX} bytes")
            if self.isid is not None:
                if not isinstance(self.isid, int) or isinstance(self.isid, bool):
                    raise TypeError("isid must be an int")
                if not 0 <= self.isid < 1 << 48:
                    raise ValueError(f"ISID {self.isid:#x} does not fit in 48 bits")
                if ISID_SEPARATOR in self.iscsi_name:
                    raise ValueError(f"a name with an ISID cannot contain {ISID_SEPARATOR!r}")
        else:
            raise ValueError(f"TransportIDs for protocol {self.protocol.name} are not supported")

    # -- named constructors -----------------------------------------------------------------

    @classmethod
    def iscsi(cls, name: str, isid: int | str | None = None) -> Self:
        """An iSCSI TransportID: device name (format 00) or, with *isid*, port (format 01).

        :param name: the iSCSI name, e.g. ``iqn.1994-05.com.redhat:client``.
        :param isid: the ISID as an int or as 12 hex digits (optionally ``0x``-prefixed).
        """
        return cls(ProtocolId.ISCSI, iscsi_name=name, isid=_parse_isid(isid))

    @classmethod
    def fc(cls, wwpn: int | str) -> Self:
        """A Fibre Channel TransportID for the port name *wwpn* (int, or 16 hex digits with
        optional ``0x``/``naa.`` prefix and ``:`` separators)."""
        return cls(ProtocolId.FCP, address=_parse_wwn(wwpn, "WWPN"))

    @classmethod
    def sas(cls, address: int | str) -> Self:
        """A SAS TransportID for the SAS *address* (int, or 16 hex digits, as for :meth:`fc`)."""
        return cls(ProtocolId.SAS, address=_parse_wwn(address, "SAS address"))

    # -- properties -------------------------------------------------------------------------

    @property
    def format_code(self) -> int:
        """The FORMAT CODE: 1 for an iSCSI TransportID with ISID, else 0."""
        return 1 if self.isid is not None else 0

    @property
    def identifier(self) -> str:
        """The port as text: ``name`` or ``name,i,0x<isid>`` for iSCSI, ``0x<16 hex>`` else."""
        if self.iscsi_name is not None:
            if self.isid is None:
                return self.iscsi_name
            return f"{self.iscsi_name}{ISID_SEPARATOR}{self.isid:012x}"
        return f"0x{self.address:016x}"

    def without_isid(self) -> TransportID:
        """The format-00 (device name) form of an iSCSI TransportID; others unchanged."""
        return attrs.evolve(self, isid=None)

    @override
    def __str__(self) -> str:
        # Worded as sg3_utils' TransportID decoder words them, each on one line.
        if self.protocol == ProtocolId.FCP:
            return f"FCP-2 World Wide Name: {self.identifier}"
        if self.protocol == ProtocolId.SAS:
            return f"SAS address: {self.identifier}"
        if self.isid is None:
            return f"iSCSI name: {self.identifier}"
        return f"iSCSI world wide unique port id: {self.identifier}"

    # -- encoding ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Encode, with SPC-4 padding (iSCSI: ADDITIONAL LENGTH ≥ 20, a multiple of 4)."""
        if self.protocol == ProtocolId.FCP:
            out = bytearray(_FIXED_TID_SIZE)
            out[0] = ProtocolId.FCP
            out[8:16] = (self.address or 0).to_bytes(8, "big")
            return bytes(out)
        if self.protocol == ProtocolId.SAS:
            out = bytearray(_FIXED_TID_SIZE)
            out[0] = ProtocolId.SAS
            out[4:12] = (self.address or 0).to_bytes(8, "big")
            return bytes(out)
        body = self.identifier.encode() + b"\0"
        additional = max(_ISCSI_MIN_ADDITIONAL, (len(body) + 3) & ~3)
        head = bytes((self.format_code << 6 | ProtocolId.ISCSI, 0))
        return head + additional.to_bytes(2, "big") + body.ljust(additional, b"\0")

    # -- decoding ---------------------------------------------------------------------------

    @classmethod
    def decode(cls, data: bytes, offset: int = 0) -> tuple[TransportID, int]:
        """Decode the TransportID that starts at *offset*.

        :returns: the TransportID and the number of bytes it occupies.
        :raises TransportIDError: if the bytes are not a supported, complete TransportID.
        """
        data = bytes(data)
        if offset < 0 or offset >= len(data):
            raise TransportIDError("TransportID is missing (no bytes left)")
        first = data[offset]
        format_code, protocol = first >> 6, first & 0x0F
        if protocol in (ProtocolId.FCP, ProtocolId.SAS):
            name = ProtocolId(protocol).name
            if format_code != 0:
                raise TransportIDError(f"{name} TransportID format code {format_code} is invalid")
            if len(data) - offset < _FIXED_TID_SIZE:
                raise TransportIDError(f"{name} TransportID is cut off (needs 24 bytes)")
            at = offset + (8 if protocol == ProtocolId.FCP else 4)
            address = int.from_bytes(data[at : at + 8], "big")
            return cls(protocol, address=address), _FIXED_TID_SIZE
        if protocol == ProtocolId.ISCSI:
            return cls._decode_iscsi(data, offset, format_code)
        try:
            what = ProtocolId(protocol).name
        except ValueError:
            what = f"{protocol:#x}"
        raise TransportIDError(f"TransportID protocol {what} is not supported")

    @classmethod
    def _decode_iscsi(cls, data: bytes, offset: int, format_code: int) -> tuple[TransportID, int]:
        if format_code not in (0, 1):
            raise TransportIDError(f"iSCSI TransportID format code {format_code} is invalid")
        if len(data) - offset < 4:
            raise TransportIDError("iSCSI TransportID is cut off before its length")
        additional = int.from_bytes(data[offset + 2 : offset + 4], "big")
        if additional == 0 or additional % 4:
            # SPC-4 §7.6.4.6: a multiple of 4 (the minimum of 20 is not enforced, as in LIO).
            raise TransportIDError(f"iSCSI TransportID length {additional} is not a multiple of 4")
        size = 4 + additional
        if len(data) - offset < size:
            raise TransportIDError(f"iSCSI TransportID is cut off (needs {size} bytes)")
        body = data[offset + 4 : offset + size]
        end = body.find(0)
        if end < 0:
            raise TransportIDError("iSCSI TransportID name is not NUL-terminated")
        try:
            text = body[:end].decode()
        except UnicodeDecodeError:
            raise TransportIDError("iSCSI TransportID name is not UTF-8") from None
        isid: int | None = None
        if format_code == 1:
            name, sep, isid_text = text.partition(ISID_SEPARATOR)
            if not sep:
                raise TransportIDError(f"iSCSI port TransportID has no {ISID_SEPARATOR!r}")
            if not _HEX_ISID.fullmatch(isid_text):
                raise TransportIDError(f"iSCSI TransportID ISID {isid_text!r} is not 12 hex digits")
            isid = int(isid_text, 16)
        else:
            name = text
        try:
            return cls(ProtocolId.ISCSI, iscsi_name=name, isid=isid), size
        except (TypeError, ValueError) as exc:
            raise TransportIDError(f"iSCSI TransportID is invalid: {exc}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> TransportID:
        """Decode one TransportID that fills *data* (trailing NUL padding is allowed).

        :raises TransportIDError: if *data* is not exactly one supported TransportID.
        """
        tid, size = cls.decode(data)
        if any(bytes(data)[size:]):
            raise TransportIDError("non-zero bytes follow the TransportID")
        return tid

    @classmethod
    def decode_list(cls, data: bytes) -> tuple[TransportID, ...]:
        """Decode TransportIDs packed one after another until *data* is used up.

        :raises TransportIDError: if any of them is invalid or the last one is cut off.
        """
        data = bytes(data)
        out: list[TransportID] = []
        offset = 0
        while offset < len(data):
            tid, size = cls.decode(data, offset)
            out.append(tid)
            offset += size
        return tuple(out)
