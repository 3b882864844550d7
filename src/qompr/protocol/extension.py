# SPDX-License-Identifier: MIT
"""qompr's extension of the qemu-pr-helper protocol: named initiators and TEST UNIT READY.

Persistent reservations belong to an I_T nexus.  Behind a helper, every client process is
its own initiator; a trusted client (root, or a uid the helper lists with
``--allow-naming-uid``) may instead *name* the initiator and target port its commands
arrive on, so that ``fence_scsi``'s one-shot ``sg_persist`` runs are one node.

Negotiation (``docs/daemon.md``, "Identity rules"):

1. The helper announces its 4-byte feature mask as qemu-pr-helper does: **0**.  Announcing
   qompr's bits would change the first bytes every QEMU reads; QEMU ignores them today, but
   a helper that answers byte for byte like qemu-pr-helper is easier to trust.
2. The client requests a mask.  QEMU requests 0 and never sees anything below.  A qompr
   client that wants the extension requests a subset of :data:`QOMPR_FEATURES`; the real
   qemu-pr-helper closes the connection on any non-zero request, which the client reports
   as a helper without the extension.
3. A qompr helper answers such a request with one more 4-byte word, the :class:`Granted`
   mask: the requested bits this peer may use (none when its uid may not name itself).
   A request with any other bit closes, as in QEMU 7.2.

The bits are 30 (:attr:`Feature.QOMPR_NAMING`) and 29 (:attr:`Feature.QOMPR_TEST_UNIT_READY`):
QEMU numbers its features from bit 0 upwards (the in-flight CLEANUP feature is bit 0), so
the top of the word stays clear of it.  Bit 31 is left alone: it is the sign bit of a mask
read as a C ``int``, and qompr's interoperability suite probes it as "a bit nobody knows".

After the grant, with :attr:`Feature.QOMPR_NAMING`, the first message may be an
:class:`Identify` (and only the first: a connection's nexus never changes once a command
ran on it).  It is framed like a PERSISTENT RESERVE OUT request without the fd, so both
ends read it with the rules they already have: a 16-byte header, then the name, whose
length is in header bytes 7-8:

==========  =================================================================
byte 0      :data:`IDENTIFY_OPCODE` (C1h, in SPC's vendor-specific range)
byte 1      flags: bit 0 = a target port follows; other bits reserved (0)
bytes 2-3   RELATIVE TARGET PORT IDENTIFIER, big-endian (0 without bit 0)
bytes 4-6   reserved (0)
bytes 7-8   the length of the initiator name, big-endian, 1 to :data:`MAX_NAME`
bytes 9-15  reserved (0)
then        the name: printable ASCII without spaces (an iSCSI name or any label)
==========  =================================================================

The helper answers it with an ordinary response (GOOD, or CHECK CONDITION with ILLEGAL
REQUEST when the backend refuses the name), no data.  With
:attr:`Feature.QOMPR_TEST_UNIT_READY`, a request may carry TEST UNIT READY (opcode 00h,
with the fd of the logical unit, no data); its response is status and sense.

Everything else is a protocol violation and closes the connection: an identify that was
not granted, a second one, one after a command, a header with reserved bits set, a name
of 0 or more than :data:`MAX_NAME` bytes or with bytes outside ``!``..``~``, a descriptor
sent with it, end of file in the middle.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs

from qompr.errors import LocalProtocolError
from qompr.errors import RemoteProtocolError

__all__ = [
    "IDENTIFY_HEADER_SIZE",
    "IDENTIFY_OPCODE",
    "MAX_NAME",
    "QOMPR_FEATURES",
    "Feature",
    "Granted",
    "Identify",
    "identify_name_length",
    "identify_refused_text",
    "no_extension_text",
    "refusal_text",
]


class Feature(enum.IntFlag):
    """Feature bits of the handshake.

    QEMU 7.2 defines none.  QEMU's unmerged "cleanup" patch would define bit 0
    (``PR_HELPER_FEATURE_CLEANUP``, opcode 0xFF); it is not supported here, so requesting it
    closes, as in 7.2.  qompr's own bits (:mod:`qompr.protocol.extension`) sit at the top.
    """

    NONE = 0
    #: The client may name its initiator and target port (:class:`Identify`).
    QOMPR_NAMING = 1 << 30
    #: The client may send TEST UNIT READY (opcode 00h) through the helper.
    QOMPR_TEST_UNIT_READY = 1 << 29


#: Every bit of qompr's extension: a request may hold any subset of these and nothing else.
QOMPR_FEATURES: Final = Feature.QOMPR_NAMING | Feature.QOMPR_TEST_UNIT_READY
#: The identify message's opcode: vendor-specific (SPC-4 §4.2.5.1, C0h-FFh), not QEMU's FFh.
IDENTIFY_OPCODE: Final = 0xC1
#: The header of an identify message (the size of a helper CDB).
IDENTIFY_HEADER_SIZE: Final = 16
#: The longest initiator name: an iSCSI name's limit (SPC-4 §7.6.4.6, 223 bytes).
MAX_NAME: Final = 223

_WORD = struct.Struct(">I")
_TARGET_PORT_VALID = 0x01


@attrs.frozen
class Granted:
    """The helper's answer to a request for qompr's extension: the bits this peer may use.

    :param features: a subset of the requested bits.
    """

    features: Feature = attrs.field(default=Feature.NONE, converter=Feature)

    def to_bytes(self) -> bytes:
        """The 4-byte big-endian word."""
        return _WORD.pack(int(self.features))

    @classmethod
    def from_bytes(cls, data: bytes) -> Granted:
        """Read the word (exactly 4 bytes).

        :raises RemoteProtocolError: not 4 bytes, or a bit outside :data:`QOMPR_FEATURES`.
        """
        if len(data) != _WORD.size:
            raise RemoteProtocolError(f"a grant is 4 bytes, not {len(data)}")
        (value,) = _WORD.unpack(data)
        if value & ~int(QOMPR_FEATURES):
            raise RemoteProtocolError(f"the helper granted unknown features {value:#x}")
        return cls(Feature(value))


def _check_name(name: str) -> None:
    raw = name.encode("ascii", "replace")
    if not 1 <= len(raw) <= MAX_NAME:
        raise LocalProtocolError(f"an initiator name is 1 to {MAX_NAME} bytes, not {len(raw)}")
    if not name.isascii() or not all(0x21 <= b <= 0x7E for b in raw):
        raise LocalProtocolError(f"initiator name {name!r} must be printable ASCII without spaces")


def _check_initiator(_instance: object, _attribute: object, value: str) -> None:
    _check_name(value)


def _check_port(_instance: object, _attribute: object, value: int | None) -> None:
    if value is not None and not 1 <= value <= 0xFFFF:
        raise LocalProtocolError(f"relative target port {value} is not in 1-65535")


@attrs.frozen
class Identify:
    """A trusted client names the initiator (and target port) of its connection.

    :param initiator: the name: printable ASCII without spaces, 1 to :data:`MAX_NAME`
        bytes (an iSCSI name such as ``iqn.2026-12.org.example:node1``, or a label such as
        ``node1`` from which the helper's backend derives one).
    :param target_port: the RELATIVE TARGET PORT IDENTIFIER, or ``None`` for the backend's
        default.
    """

    initiator: str = attrs.field(validator=_check_initiator)
    target_port: int | None = attrs.field(default=None, validator=_check_port)

    def to_bytes(self) -> bytes:
        """The header and the name."""
        name = self.initiator.encode("ascii")
        header = bytearray(IDENTIFY_HEADER_SIZE)
        header[0] = IDENTIFY_OPCODE
        if self.target_port is not None:
            header[1] = _TARGET_PORT_VALID
            header[2:4] = self.target_port.to_bytes(2, "big")
        header[7:9] = len(name).to_bytes(2, "big")
        return bytes(header) + name

    @classmethod
    def from_bytes(cls, data: bytes) -> Identify:
        """Read a whole message (header and name, nothing more).

        :raises RemoteProtocolError: anything that is not a well-formed identify message.
        """
        length = identify_name_length(data[:IDENTIFY_HEADER_SIZE])
        if len(data) != IDENTIFY_HEADER_SIZE + length:
            raise RemoteProtocolError(
                f"identify message is {len(data)} bytes, its header says "
                f"{IDENTIFY_HEADER_SIZE + length}"
            )
        raw = data[IDENTIFY_HEADER_SIZE:]
        if not all(0x21 <= b <= 0x7E for b in raw):
            raise RemoteProtocolError("initiator name is not printable ASCII without spaces")
        port = int.from_bytes(data[2:4], "big") if data[1] & _TARGET_PORT_VALID else None
        try:
            return cls(raw.decode("ascii"), port)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(exc.message) from None


def identify_name_length(header: bytes) -> int:
    """Check an identify header and return the length of the name after it.

    :raises RemoteProtocolError: a short header, another opcode, reserved bits set, a
        target port flagged but 0 (or given without the flag), a name length of 0 or over
        :data:`MAX_NAME`.
    """
    if len(header) != IDENTIFY_HEADER_SIZE:
        raise RemoteProtocolError(f"identify header is {len(header)} bytes, not 16")
    if header[0] != IDENTIFY_OPCODE:
        raise RemoteProtocolError(f"opcode {header[0]:#04x} is not identify")
    flags = header[1]
    if flags & ~_TARGET_PORT_VALID:
        raise RemoteProtocolError(f"identify flags {flags:#04x} has reserved bits set")
    port = int.from_bytes(header[2:4], "big")
    if (flags & _TARGET_PORT_VALID) != (port != 0):
        raise RemoteProtocolError(f"identify target port {port} does not match its flag")
    if any(header[4:7]) or any(header[9:]):
        raise RemoteProtocolError("identify header has reserved bytes set")
    length = int.from_bytes(header[7:9], "big")
    if not 1 <= length <= MAX_NAME:
        raise RemoteProtocolError(f"identify name length {length} is not in 1-{MAX_NAME}")
    return length


def no_extension_text(path: str) -> str:
    """What a client says when a helper closed the connection on its request for qompr's
    extension (qemu-pr-helper does: it takes no feature bit)."""
    return (
        f"Failed to negotiate with '{path}': the helper closed the connection when asked for "
        "qompr's protocol extension (named initiators, TEST UNIT READY); qemu-pr-helper does "
        "not have it: use qompr-pr-helper"
    )


def refusal_text(path: str, wanted: Feature, granted: Feature, uid: int) -> str | None:
    """What a client says when the helper granted less than *wanted*, or ``None``."""
    missing = wanted & ~granted
    if missing & Feature.QOMPR_NAMING:
        return (
            f"Failed to negotiate with '{path}': the helper does not let uid {uid} name its "
            "initiator (qompr-pr-helper --allow-naming-uid)"
        )
    if missing:
        return f"Failed to negotiate with '{path}': the helper refused features {int(missing):#x}"
    return None


def identify_refused_text(path: str, message: Identify) -> str:
    """What a client says when the helper answered its :class:`Identify` with an error."""
    return (
        f"'{path}': the helper cannot name initiator '{message.initiator}': its backend does "
        "not emulate initiators (a device knows its own)"
    )
