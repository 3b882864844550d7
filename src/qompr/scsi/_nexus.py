# SPDX-License-Identifier: MIT
"""The I_T nexus: which initiator port talks through which target port (SAM-5).

Persistent reservations are kept per I_T nexus, whose identity is the pair (initiator port
TransportID, RELATIVE TARGET PORT IDENTIFIER) (docs/reference/spc4-pr.md §2.1).  :class:`Nexus`
therefore compares and hashes by exactly that pair; :attr:`Nexus.initiator` is a label for humans
and logs.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from qompr._compat import override
from qompr.scsi._transport_id import TransportID
from qompr.scsi._util import uint_range

__all__ = ["DERIVED_IQN_PREFIX", "Nexus", "derive_transport_id"]

#: Prefix of the iSCSI name derived for an initiator label that is not an iSCSI name itself.
DERIVED_IQN_PREFIX = "iqn.2026-11.org.qompr:"

# Names the iSCSI naming rules already cover (RFC 3720 §3.2.6.3): iqn., eui. and naa. forms.
_ISCSI_NAME = re.compile(r"(?i)(iqn|eui|naa)\.")
# RFC 3722 allows lower-case letters, digits, '-', '.' and ':' in an iSCSI name (after
# stringprep); anything else in a derived name becomes '-'.
_NOT_ISCSI_CHAR = re.compile(r"[^a-z0-9.:-]")


def derive_transport_id(initiator: str) -> TransportID:
    """The iSCSI device-name TransportID (format 00) that :class:`Nexus` uses for *initiator*.

    An initiator that already looks like an ``iqn.``, ``eui.`` or ``naa.`` name is used as it
    is; any other label becomes ``iqn.2026-11.org.qompr:<label>``, lower-cased and with every
    character outside ``a-z 0-9 . : -`` replaced by ``-``.

    :raises ValueError: if the resulting name is not a valid iSCSI TransportID name.
    """
    if _ISCSI_NAME.match(initiator):
        return TransportID.iscsi(initiator)
    return TransportID.iscsi(DERIVED_IQN_PREFIX + _NOT_ISCSI_CHAR.sub("-", initiator.lower()))


def _non_empty(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


def _optional_tid(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, TransportID):
        raise TypeError(f"{attribute.alias} must be a TransportID or None")


# cache_hash: a connection's nexus keys a unit-attention lookup on every command.
@attrs.frozen(repr=False, cache_hash=True)
class Nexus:
    """An I_T nexus.

    ``Nexus("A")`` is initiator "A" through target port 1, with the derived TransportID
    ``iqn.2026-11.org.qompr:a``; pass *transport_id* to model a specific port (an ISID, an FC
    WWPN).  Two nexuses are equal when their TransportIDs and target ports are.

    :param initiator: a label for the initiator (or its iSCSI name).
    :param target_port: the RELATIVE TARGET PORT IDENTIFIER, 1-65535.
    :param transport_id: the initiator port's TransportID; derived from *initiator* if omitted
        (see :func:`derive_transport_id`).
    """

    initiator: str = attrs.field(eq=False, validator=_non_empty)
    target_port: int = attrs.field(default=1, validator=uint_range(1, 0xFFFF))
    # As given (None: derive), so that attrs.evolve(nexus, initiator=...) derives afresh.
    _given_tid: TransportID | None = attrs.field(
        default=None, kw_only=True, alias="transport_id", eq=False, validator=_optional_tid
    )
    # The effective TransportID; with target_port, the whole identity (eq and hash).
    _tid: TransportID = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        tid = self._given_tid or derive_transport_id(self.initiator)
        object.__setattr__(self, "_tid", tid)  # frozen class: set once, here

    @property
    def transport_id(self) -> TransportID:
        """The initiator port's TransportID: the one given, or the derived one."""
        return self._tid

    @override
    def __repr__(self) -> str:
        return f"Nexus({self.initiator!r}, {self.target_port}, transport_id={self.transport_id!r})"

    @override
    def __str__(self) -> str:
        tid = self.transport_id.identifier
        return f"{self.initiator} ({tid}) via target port {self.target_port}"
